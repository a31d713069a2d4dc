/**
 * A property of identity as a whole, checked exhaustively over a small
 * universe: for every role (the eight system roles and custom ones,
 * including an Admin missing a single permission), against every user
 * more privileged than it (one holding a permission the role lacks), every
 * RPC that changes roles, users or credentials — alone and in the
 * sequences an attacker would chain (create a role then assign it, widen a
 * held role then refresh, invite with roles, change the target's email
 * then reset its password) — is refused, and afterwards:
 *   - no caller's effective permissions (what a refreshed token would
 *     carry) grew beyond what their role granted;
 *   - no role a caller created or changed grants more than that caller held;
 *   - every target keeps its email, name, state, roles, second factor and
 *     sessions, and nobody started an email change for it.
 * Real tenancy, identity, Postgres and NATS; callers are principals with
 * exactly their role's permissions, acting as real users of the tenant.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { MfaService, SessionService, UserState, type User } from "@bulwark/contracts";
import { effectivePermissions, newId, permissionCatalogue, systemRole, systemRoles } from "@bulwark/core";
import { clientFor } from "../support/harness.js";
import { createUser, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { identityQuery, operatorIn, principalOf, startIdentityMesh, uniqueEmail, type IdentityMesh } from "./support-identity.js";

/** One role of the universe: its id and what it grants. */
interface RoleUnderTest {
  readonly label: string;
  readonly id: string;
  readonly permissions: ReadonlySet<string>;
}

/** A user holding one role of the universe, as caller or as target. */
interface Holder {
  readonly role: RoleUnderTest;
  readonly userId: string;
  readonly email: string;
  /** Targets only: a live session and a TOTP credential, seeded in the database. */
  readonly sessionId: string;
}

const members = systemRole("system:member")!.permissions;
const catalogue = permissionCatalogue.map((p) => p.name);

let mesh: IdentityMesh;
let tenant: TestTenant;
let universe: RoleUnderTest[];
let callers: Holder[];
let targets: Holder[];

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
  const ops = operatorIn(mesh, tenant.id);
  const custom = async (name: string, permissions: Iterable<string>): Promise<RoleUnderTest> => {
    const { role } = await ops.roles.createRole({ name, permissions: [...new Set(permissions)] });
    return { label: name, id: role!.id, permissions: new Set(role!.permissions) };
  };
  const admin = systemRole("system:admin")!.permissions;
  universe = [
    ...systemRoles.map((r) => ({ label: r.name, id: r.id, permissions: new Set(r.permissions) })),
    // Every action permission, so only the rule on more privileged users stands in the way.
    await custom("Admin minus one", admin.filter((p) => p !== "compliance.posture.read")),
    await custom("Role manager", [...members, "identity.roles.manage", "identity.roles.assign"]),
    await custom("User manager", [...members, ...catalogue.filter((p) => p.startsWith("identity.users.")), "identity.sessions.read", "identity.sessions.revoke", "identity.mfa.reset"]),
    await custom("Shredder", [...members, "keys.encryption.destroy"]),
  ];
  const holder = async (role: RoleUnderTest, seed: boolean): Promise<Holder> => {
    const u = await createUser(mesh, tenant, { roles: [role.id], mfaEnrolled: seed });
    const sessionId = newId("ses");
    if (seed) {
      await identityQuery(
        mesh,
        `insert into $schema.sessions (id, tenant_id, user_id, device, user_agent, ip_address, mfa_pending, created_at, auth_time, last_seen_at, idle_timeout_s, expires_at)
         values ($1, $2, $3, 'laptop', '', '', false, now(), now(), now(), 86400, now() + interval '1 day')`,
        [sessionId, tenant.id, u.id],
      );
      await identityQuery(mesh, "insert into $schema.totp_credentials (user_id, tenant_id, secret_ciphertext, confirmed_at, last_used_step, created_at) values ($1, $2, $3, now(), 0, now())", [u.id, tenant.id, Buffer.from("sealed")]);
    }
    return { role, userId: u.id, email: u.email, sessionId };
  };
  callers = await Promise.all(universe.map((r) => holder(r, false)));
  targets = await Promise.all(universe.map((r) => holder(r, true)));
});

after(async () => {
  await mesh?.stop();
});

/** What a refreshed token of the user would carry: the union of their roles' permissions, read from the database. */
async function effectiveOf(userId: string): Promise<Set<string>> {
  const rows = await identityQuery<{ role_id: string }>(mesh, "select role_id from $schema.user_roles where user_id = $1", [userId]);
  const ids = rows.map((r) => r.role_id);
  const custom = await identityQuery<{ id: string; permissions: string[] }>(mesh, "select id, permissions from $schema.roles where id = any($1)", [ids]);
  return effectivePermissions(ids, custom);
}

const lacking = (caller: ReadonlySet<string>, target: ReadonlySet<string>): string[] => [...target].filter((p) => !caller.has(p));

test("no role gains a permission or takes over a more privileged user, whatever it calls and in whatever order", async () => {
  const violations: string[] = [];
  /** Expects a refusal with one of `codes`; records anything else. */
  const refused = async (what: string, call: Promise<unknown>, codes: readonly Code[] = [Code.PermissionDenied]): Promise<void> => {
    try {
      await call;
      violations.push(`${what}: succeeded`);
    } catch (err) {
      const code = ConnectError.from(err).code;
      if (!codes.includes(code)) violations.push(`${what}: ${Code[code]} ${ConnectError.from(err).rawMessage}`);
    }
  };
  /** Expects success (a harmless step of a sequence); records a failure. */
  const allowed = async <T>(what: string, call: Promise<T>): Promise<T | undefined> => {
    try {
      return await call;
    } catch (err) {
      violations.push(`${what}: expected to succeed, got ${Code[ConnectError.from(err).code]} ${ConnectError.from(err).rawMessage}`);
      return undefined;
    }
  };
  const createdBy = new Map<string, string[]>();

  await Promise.all(
    callers.map(async (caller) => {
      const held = caller.role.permissions;
      const c = principalOf(mesh, tenant.id, held, caller.userId);
      const token = mesh.identity.issueToken({ id: caller.userId, kind: "user", tenantId: tenant.id, permissions: new Set(held) });
      const mfa = clientFor(MfaService, mesh.identity.baseUrl, token);
      const sessions = clientFor(SessionService, mesh.identity.baseUrl, token);
      const me = caller.role.label;
      const created: string[] = [];
      createdBy.set(caller.userId, created);

      // Sequence: create a role from what one holds, assign it to oneself, then try to widen it.
      let own: string | undefined;
      if (held.has("identity.roles.manage")) {
        own = (await allowed(`${me}: CreateRole with its own permissions`, c.roles.createRole({ name: `Own of ${me}`, permissions: [...held] })))?.role?.id;
        if (own !== undefined) created.push(own);
        if (own !== undefined && held.has("identity.roles.assign")) await allowed(`${me}: AssignRole(self, own role)`, c.roles.assignRole({ userId: caller.userId, roleId: own }));
      }

      // Each target's sequence runs in order; the targets of one caller run side by side.
      await Promise.all(
        targets.map(async (target) => {
          const missing = lacking(held, target.role.permissions);
          if (missing.length === 0) return;
          const on = `${me} → ${target.role.label}`;
          // Raising oneself: take the target's role, build it, widen a held role to it, invite with it.
          await refused(`${on}: AssignRole(self, target's role)`, c.roles.assignRole({ userId: caller.userId, roleId: target.role.id }));
          await refused(`${on}: CreateRole(target's permissions)`, c.roles.createRole({ name: `Copy ${on}`, permissions: [...target.role.permissions] }));
          await refused(`${on}: CreateRole(own + one missing)`, c.roles.createRole({ name: `Plus ${on}`, permissions: [...held, missing[0]!] }));
          if (!caller.role.id.startsWith("system:")) {
            await refused(`${on}: UpdateRole(held role, + missing)`, c.roles.updateRole({ roleId: caller.role.id, permissions: [...held, ...missing], updateMask: { paths: ["permissions"] } }));
          }
          if (own !== undefined) {
            await refused(`${on}: UpdateRole(own new role, + missing)`, c.roles.updateRole({ roleId: own, permissions: [...held, ...missing], updateMask: { paths: ["permissions"] } }));
          }
          await refused(`${on}: UpdateRole(target's custom role)`, c.roles.updateRole({ roleId: target.role.id.startsWith("rol_") ? target.role.id : "rol_0000000000000000000000000", name: `Renamed ${on}`, updateMask: { paths: ["name"] } }), [Code.PermissionDenied, Code.NotFound]);
          await refused(`${on}: CreateUser(with target's role)`, c.users.createUser({ email: uniqueEmail("sock"), displayName: "Sock Puppet", roleIds: [target.role.id], returnInvitationToken: true }));
          // Taking the target over: its roles, profile, email (then a reset), MFA, sessions, state, existence.
          await refused(`${on}: AssignRole(target, member)`, c.roles.assignRole({ userId: target.userId, roleId: "system:member" }));
          await refused(`${on}: RevokeRole(target, its role)`, c.roles.revokeRole({ userId: target.userId, roleId: target.role.id }));
          await refused(`${on}: UpdateUser(target)`, c.users.updateUser({ userId: target.userId, displayName: "Mallory", updateMask: { paths: ["display_name"] } }));
          await refused(`${on}: RequestEmailChange(target)`, c.users.requestEmailChange({ userId: target.userId, newEmail: uniqueEmail("mallory") }));
          await refused(`${on}: ResetUserMfa(target)`, mfa.resetUserMfa({ userId: target.userId }));
          await refused(`${on}: RevokeSession(target's)`, sessions.revokeSession({ sessionId: target.sessionId }));
          await refused(`${on}: RevokeAllSessions(target)`, sessions.revokeAllSessions({ userId: target.userId }));
          await refused(`${on}: SuspendUser(target)`, c.users.suspendUser({ userId: target.userId, reason: "takeover" }));
          await refused(`${on}: ReactivateUser(target)`, c.users.reactivateUser({ userId: target.userId }));
          await refused(`${on}: OffboardUser(target)`, c.users.offboardUser({ userId: target.userId, successorUserId: caller.userId }));
          await refused(`${on}: DeleteUser(target)`, c.users.deleteUser({ userId: target.userId }));
          await refused(`${on}: TransferOwnership(target)`, c.roles.transferOwnership({ newOwnerUserId: target.userId }), [Code.PermissionDenied, Code.FailedPrecondition]);
        }),
      );
    }),
  );

  // Nobody rose: what a refresh would now issue is within what the role granted.
  for (const caller of callers) {
    const gained = [...(await effectiveOf(caller.userId))].filter((p) => !caller.role.permissions.has(p));
    if (gained.length > 0) violations.push(`${caller.role.label}: gained ${gained.join(", ")}`);
  }
  // No role grants more than its maker or its definition.
  const roles = new Map((await identityQuery<{ id: string; permissions: string[] }>(mesh, "select id, permissions from $schema.roles")).map((r) => [r.id, r.permissions]));
  for (const r of universe.filter((u) => u.id.startsWith("rol_"))) {
    const now = roles.get(r.id) ?? [];
    if (now.length !== r.permissions.size || now.some((p) => !r.permissions.has(p))) violations.push(`role ${r.label} changed: ${lacking(r.permissions, new Set(now)).join(", ")} added`);
  }
  for (const caller of callers) {
    for (const id of createdBy.get(caller.userId) ?? []) {
      const beyond = (roles.get(id) ?? []).filter((p) => !caller.role.permissions.has(p));
      if (beyond.length > 0) violations.push(`${caller.role.label}: made a role granting ${beyond.join(", ")}`);
    }
  }
  // Every target is as it was.
  const ops = operatorIn(mesh, tenant.id);
  for (const target of targets) {
    const { user } = await ops.users.getUser({ userId: target.userId });
    const expected: Partial<User> = { email: target.email, displayName: "Pat Example", state: UserState.ACTIVE, roleIds: [target.role.id] };
    const actual: Partial<User> = { email: user?.email, displayName: user?.displayName, state: user?.state, roleIds: user?.roleIds };
    if (JSON.stringify(actual) !== JSON.stringify(expected)) violations.push(`${target.role.label} target changed: ${JSON.stringify(actual)}`);
    const [row] = await identityQuery<{ totp: number; live: number; changes: number; mfa: boolean }>(
      mesh,
      `select (select count(*)::int from $schema.totp_credentials where user_id = $1 and confirmed_at is not null) as totp,
              (select count(*)::int from $schema.sessions where user_id = $1 and revoked_at is null) as live,
              (select count(*)::int from $schema.email_change_tokens where user_id = $1) as changes,
              (select mfa_enrolled from $schema.users where id = $1) as mfa`,
      [target.userId],
    );
    if (JSON.stringify(row) !== JSON.stringify({ totp: 1, live: 1, changes: 0, mfa: true })) violations.push(`${target.role.label} target lost its factor or session, or has an email change: ${JSON.stringify(row)}`);
  }
  assert.deepEqual(violations, []);
  const pairs = callers.reduce((n, c) => n + targets.filter((t) => lacking(c.role.permissions, t.role.permissions).length > 0).length, 0);
  assert.ok(pairs > 60, `walked ${pairs} caller/target pairs`);
});
