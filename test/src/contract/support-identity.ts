/**
 * What the identity contract tests share: tenancy and identity started for
 * real (identity asks tenancy for each tenant's security policy), tenants
 * created by the bootstrap operator, clients acting as the operator inside a
 * tenant or as a tenant's user, and the events identity recorded.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { EnvelopeSchema, Region, RoleService, TenancyService, UserService, type User } from "@bulwark/contracts";
import { effectivePermissions } from "@bulwark/core";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { adminQuery, bootstrapToken, clientFor, startTestService, uniqueSlug, type Started } from "../support/harness.js";

/** Typed clients of the two identity APIs under test. */
export interface IdentityClients {
  readonly users: Client<typeof UserService>;
  readonly roles: Client<typeof RoleService>;
}

/** Tenancy and identity, started for one test file. */
export interface IdentityMesh {
  readonly tenancy: Started;
  readonly identity: Started;
  /** The bootstrap operator on tenancy. */
  readonly tenancyOps: Client<typeof TenancyService>;
  stop(): Promise<void>;
}

/** Starts tenancy, then identity pointed at it, with `env` added to both. */
export async function startIdentityMesh(env: Record<string, string> = {}): Promise<IdentityMesh> {
  const tenancy = await startTestService(tenancyModule, { env });
  // One mesh: identity follows tenancy's tenant-status bucket under the same subject prefix.
  const identity = await startTestService(identityModule, { prefix: tenancy.prefix, env: { ...env, TENANCY_URL: tenancy.baseUrl } });
  return {
    tenancy,
    identity,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async stop() {
      await identity.stop();
      await tenancy.stop();
    },
  };
}

/** A password every policy of these tests accepts (long, random, not personal). */
export function strongPassword(): string {
  return `Lantern-quartz-${nuid.next()}-orbit`;
}

/** A unique lower-case email. */
export function uniqueEmail(label = "user"): string {
  return `${label}.${nuid.next().toLowerCase().slice(-10)}@example.test`;
}

/** Creates an active tenant and returns its id. */
export async function newTenant(mesh: IdentityMesh): Promise<string> {
  const { tenant } = await mesh.tenancyOps.createTenant({ slug: uniqueSlug("id"), displayName: "Identity Co", region: Region.EU });
  assert.ok(tenant !== undefined);
  return tenant.id;
}

/** Clients with a credential and optional extra headers. */
export function clientsWith(mesh: IdentityMesh, token: string | undefined, headers: Record<string, string> = {}): IdentityClients {
  return {
    users: clientFor(UserService, mesh.identity.baseUrl, token, "grpc", headers),
    roles: clientFor(RoleService, mesh.identity.baseUrl, token, "grpc", headers),
  };
}

/** The bootstrap operator acting inside one tenant (the bulwark-tenant header). */
export function operatorIn(mesh: IdentityMesh, tenantId: string): IdentityClients {
  return clientsWith(mesh, bootstrapToken, { "bulwark-tenant": tenantId });
}

/** A principal of a tenant holding exactly `permissions`. */
export function principalOf(mesh: IdentityMesh, tenantId: string, permissions: Iterable<string>, id = `usr_${nuid.next().toLowerCase()}`): IdentityClients {
  return clientsWith(mesh, mesh.identity.issueToken({ id, kind: "user", tenantId, permissions: new Set(permissions) }));
}

/** A user signed in with the permissions of the roles they hold. */
export function signedIn(mesh: IdentityMesh, user: User): IdentityClients {
  return principalOf(mesh, user.tenantId, effectivePermissions(user.roleIds), user.id);
}

/**
 * Invites a user as the operator, asking for the invitation token (it is
 * otherwise only mailed); returns the user and the token.
 */
export async function invite(mesh: IdentityMesh, tenantId: string, roleIds: string[] = [], email = uniqueEmail()): Promise<{ user: User; token: string }> {
  const res = await operatorIn(mesh, tenantId).users.createUser({ email, displayName: "Invited Person", roleIds, returnInvitationToken: true });
  assert.ok(res.user !== undefined);
  return { user: res.user, token: res.invitationToken };
}

/** Invites a user and accepts the invitation: an ACTIVE user. */
export async function activeUser(mesh: IdentityMesh, tenantId: string, roleIds: string[] = [], email = uniqueEmail()): Promise<User> {
  const { token } = await invite(mesh, tenantId, roleIds, email);
  const { user } = await operatorIn(mesh, tenantId).users.acceptInvitation({ invitationToken: token, password: strongPassword() });
  assert.ok(user !== undefined);
  return user;
}

/** An event identity recorded in its outbox. */
export interface RecordedEvent {
  /** `<aggregate>.<verb>`, e.g. `user.suspended`. */
  readonly type: string;
  readonly aggregateId: string;
  readonly actorId: string;
  readonly payloadType: string;
  readonly payload: Uint8Array;
}

/** The events identity recorded for one tenant, oldest first. */
export async function eventsOf(mesh: IdentityMesh, tenantId: string): Promise<RecordedEvent[]> {
  const rows = await adminQuery<{ envelope: Buffer }>(`select envelope from "${mesh.identity.config.DATABASE_SCHEMA}".outbox where tenant_id = $1 order by created_at, id`, [tenantId]);
  const prefix = `${mesh.identity.prefix}.identity.`;
  return rows.map((r) => {
    const e = fromBinary(EnvelopeSchema, r.envelope);
    return { type: e.type.startsWith(prefix) ? e.type.slice(prefix.length) : e.type, aggregateId: e.aggregateId, actorId: e.actor?.id ?? "", payloadType: e.payload?.typeUrl ?? "", payload: e.payload?.value ?? new Uint8Array() };
  });
}

/** The types of the events recorded about one aggregate, oldest first. */
export async function eventTypesFor(mesh: IdentityMesh, tenantId: string, aggregateId: string): Promise<string[]> {
  return (await eventsOf(mesh, tenantId)).filter((e) => e.aggregateId === aggregateId).map((e) => e.type);
}

/** Runs SQL on identity's schema as the superuser (checks on stored rows). */
export async function identityQuery<R extends Record<string, unknown>>(mesh: IdentityMesh, sql: string, params: unknown[] = []): Promise<R[]> {
  return adminQuery<R>(sql.replaceAll("$schema", `"${mesh.identity.config.DATABASE_SCHEMA}"`), params);
}
