/**
 * The contract of bulwark.identity.v1.SessionService: one's own sessions,
 * an administrator's view of others', and revocation with the permission
 * each case needs — through the typed client against real services.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { SessionService } from "@bulwark/contracts";
import { systemRole } from "@bulwark/core";
import { clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { eventsOf, identityQuery, startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { anonymousAuth, createUser, signIn, tenantWithSlug, withToken, type TestTenant } from "./support-auth.js";

const memberPermissions = systemRole("system:member")!.permissions;

let mesh: IdentityMesh;
let tenant: TestTenant;
let other: TestTenant;

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
  other = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
});

/**
 * A principal of the tenant holding `permissions` and a Member's (not a
 * session of its own): the users here are Members, and nobody may act on a
 * user more privileged than themselves.
 */
function staff(tenantId: string, permissions: string[]) {
  return clientFor(SessionService, mesh.identity.baseUrl, mesh.identity.issueToken({ id: "usr_staff", kind: "user", tenantId, permissions: new Set([...permissions, ...memberPermissions]) }));
}

describe("ListMySessions", () => {
  test("ListMySessions lists the caller's live sessions, newest first, marking the current one", async () => {
    const user = await createUser(mesh, tenant);
    const a = await signIn(mesh, user, "laptop", anonymousAuth(mesh, "10.0.0.1", { "user-agent": "ua-a" }));
    const b = await signIn(mesh, user, "phone", anonymousAuth(mesh, "10.0.0.2", { "user-agent": "ua-b" }));
    const { sessions } = await withToken(mesh, b.accessToken).sessions.listMySessions({});
    assert.deepEqual(
      sessions.map((s) => [s.id, s.device, s.userAgent, s.ipAddress, s.current, s.userId]),
      [
        [b.sessionId, "phone", "ua-b", "10.0.0.2", true, user.id],
        [a.sessionId, "laptop", "ua-a", "10.0.0.1", false, user.id],
      ],
    );
    assert.ok(sessions.every((s) => s.createTime !== undefined && s.lastSeenTime !== undefined && s.expireTime !== undefined));
  });

  test("ListMySessions without a credential is UNAUTHENTICATED", async () => {
    await refusedWith(clientFor(SessionService, mesh.identity.baseUrl).listMySessions({}), Code.Unauthenticated);
  });
});

describe("ListUserSessions", () => {
  test("ListUserSessions needs identity.sessions.read and shows a user's sessions", async () => {
    const user = await createUser(mesh, tenant);
    const a = await signIn(mesh, user);
    assert.deepEqual((await staff(tenant.id, ["identity.sessions.read"]).listUserSessions({ userId: user.id })).sessions.map((s) => s.id), [a.sessionId]);
    await refusedWith(withToken(mesh, a.accessToken).sessions.listUserSessions({ userId: user.id }), Code.PermissionDenied);
  });

  test("ListUserSessions answers NOT_FOUND for an unknown user and for another tenant's user, INVALID_ARGUMENT for a malformed id", async () => {
    const stranger = await createUser(mesh, other);
    await refusedWith(staff(tenant.id, ["identity.sessions.read"]).listUserSessions({ userId: "usr_missing" }), Code.NotFound);
    await refusedWith(staff(tenant.id, ["identity.sessions.read"]).listUserSessions({ userId: stranger.id }), Code.NotFound);
    await refusedWith(staff(tenant.id, ["identity.sessions.read"]).listUserSessions({ userId: "nope" }), Code.InvalidArgument, "user_id");
  });
});

describe("RevokeSession", () => {
  test("a user may end their own other session; its tokens stop working and session.revoked is published", async () => {
    const user = await createUser(mesh, tenant);
    const a = await signIn(mesh, user);
    const b = await signIn(mesh, user);
    await withToken(mesh, b.accessToken).sessions.revokeSession({ sessionId: a.sessionId });
    await refusedWith(withToken(mesh, a.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: a.refreshToken }), Code.Unauthenticated);
    assert.deepEqual((await withToken(mesh, b.accessToken).sessions.listMySessions({})).sessions.map((s) => s.id), [b.sessionId]);
    assert.ok((await eventsOf(mesh, tenant.id)).some((e) => e.type === "session.revoked" && e.aggregateId === a.sessionId));
  });

  test("ending another user's session needs identity.sessions.revoke", async () => {
    const victim = await createUser(mesh, tenant);
    const bystander = await createUser(mesh, tenant);
    const v = await signIn(mesh, victim);
    const b = await signIn(mesh, bystander);
    await refusedWith(withToken(mesh, b.accessToken).sessions.revokeSession({ sessionId: v.sessionId }), Code.PermissionDenied);
    await staff(tenant.id, ["identity.sessions.self", "identity.sessions.revoke"]).revokeSession({ sessionId: v.sessionId });
    await refusedWith(withToken(mesh, v.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
  });

  test("RevokeSession answers NOT_FOUND for an unknown session and for another tenant's", async () => {
    const stranger = await createUser(mesh, other);
    const s = await signIn(mesh, stranger);
    await refusedWith(staff(tenant.id, ["identity.sessions.self", "identity.sessions.revoke"]).revokeSession({ sessionId: "ses_missing" }), Code.NotFound);
    await refusedWith(staff(tenant.id, ["identity.sessions.self", "identity.sessions.revoke"]).revokeSession({ sessionId: s.sessionId }), Code.NotFound);
    await refusedWith(staff(tenant.id, ["identity.sessions.self"]).revokeSession({ sessionId: "x" }), Code.InvalidArgument, "session_id");
  });
});

describe("RevokeAllSessions", () => {
  test("RevokeAllSessions signs a user out everywhere and reports how many sessions ended", async () => {
    const user = await createUser(mesh, tenant);
    const sessions = [await signIn(mesh, user), await signIn(mesh, user), await signIn(mesh, user)];
    const { revokedSessions } = await staff(tenant.id, ["identity.sessions.revoke"]).revokeAllSessions({ userId: user.id });
    assert.equal(revokedSessions, 3);
    for (const s of sessions) await refusedWith(withToken(mesh, s.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
    assert.equal((await staff(tenant.id, ["identity.sessions.revoke"]).revokeAllSessions({ userId: user.id })).revokedSessions, 0);
  });

  test("RevokeAllSessions needs identity.sessions.revoke and a user of the tenant", async () => {
    const user = await createUser(mesh, tenant);
    const t = await signIn(mesh, user);
    await refusedWith(withToken(mesh, t.accessToken).sessions.revokeAllSessions({ userId: user.id }), Code.PermissionDenied);
    await refusedWith(staff(tenant.id, ["identity.sessions.revoke"]).revokeAllSessions({ userId: "usr_missing" }), Code.NotFound);
  });
});

describe("sessions of a more privileged user", () => {
  test("an admin cannot sign an owner out, one session or all of them", async () => {
    const owner = await createUser(mesh, tenant, { roles: ["system:owner"] });
    const s = await signIn(mesh, owner);
    const admin = staff(tenant.id, [...systemRole("system:admin")!.permissions]);
    await refusedWith(admin.revokeAllSessions({ userId: owner.id }), Code.PermissionDenied, "identity.roles.assign_owner");
    await refusedWith(admin.revokeSession({ sessionId: s.sessionId }), Code.PermissionDenied, "which the caller lacks");
    const [row] = await identityQuery<{ revoked_at: Date | null }>(mesh, "select revoked_at from $schema.sessions where id = $1", [s.sessionId]);
    assert.equal(row?.revoked_at, null, "the owner's session lives on");
    assert.ok((await staff(tenant.id, ["identity.sessions.read"]).listUserSessions({ userId: owner.id })).sessions.some((x) => x.id === s.sessionId));
  });
});
