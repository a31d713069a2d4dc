/**
 * What the API-key tests share: tenancy, identity and keys started as one mesh
 * (a shared subject prefix, each knowing where the others answer), users
 * created through identity's real RPCs, clients of ApiKeyService acting as
 * those users (with a fresh authentication time, for step-up), and the
 * events keys recorded.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { ApiKeyService, EnvelopeSchema, Region, TenancyService, type User } from "@bulwark/contracts";
import { effectivePermissions, type Principal } from "@bulwark/core";
import { identityModule } from "@bulwark/identity";
import { apiKeysPartWith, keysModuleOf, keysParts } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { nuid } from "@nats-io/nuid";
import { createServer, type AddressInfo } from "node:net";
import { adminQuery, bootstrapToken, clientFor, natsUrl, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { activeUser, type IdentityMesh } from "./support-identity.js";

/** The three services of one test file. */
export interface KeysMesh extends IdentityMesh {
  readonly keys: Started;
  readonly prefix: string;
  /** Starts another keys replica on the same schema, stream and bucket. */
  startReplica(): Promise<Started>;
}

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Intervals short enough for tests: housekeeping every second (the scheduler's least), usage written every 200 ms. */
export const testKeysModule = keysModuleOf([...keysParts.filter((p) => p.name !== "apikeys"), apiKeysPartWith({ housekeepingIntervalMs: 1000, usageFlushIntervalMs: 200, exposureReportsPerSecond: 1000 })]);

/** Starts tenancy, identity and keys wired to one another. */
export async function startKeysMesh(env: Record<string, string> = {}): Promise<KeysMesh> {
  const prefix = `t${nuid.next().toLowerCase()}`;
  const [tp, ip, kp] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
  const urls = { TENANCY_URL: `http://127.0.0.1:${tp}`, IDENTITY_URL: `http://127.0.0.1:${ip}`, KEYS_URL: `http://127.0.0.1:${kp}`, ...env };
  // keys before identity, as in a deployment: identity keeps its secrets through keys.
  const tenancy = await startTestService(tenancyModule, { prefix, env: { ...urls, PORT: String(tp) } });
  const keys = await startTestService(testKeysModule, { prefix, env: { ...urls, PORT: String(kp) } });
  const identity = await startTestService(identityModule, { prefix, env: { ...urls, PORT: String(ip) } });
  const replicas: Started[] = [];
  return {
    prefix,
    tenancy,
    identity,
    keys,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async startReplica() {
      const r = await startTestService(testKeysModule, { reuse: { schema: keys.config.DATABASE_SCHEMA, prefix }, keep: true, env: { ...urls, PORT: "0" } });
      replicas.push(r);
      return r;
    },
    async stop() {
      for (const r of replicas) await r.stop();
      await identity.stop();
      await keys.stop();
      await tenancy.stop();
      const nc = await connect({ servers: natsUrl });
      try {
        await (await jetstreamManager(nc)).streams.delete(`KV_${prefix}_keys_usage`).catch(() => undefined);
      } finally {
        await nc.close();
      }
    },
  };
}

/** Creates an active tenant. */
export async function keysTenant(mesh: KeysMesh): Promise<string> {
  const { tenant } = await mesh.tenancyOps.createTenant({ slug: uniqueSlug("keys"), displayName: "Keys Co", region: Region.EU });
  assert.ok(tenant !== undefined);
  return tenant.id;
}

/** An active user of the tenant holding `roles` (identity's real records). */
export async function keysUser(mesh: KeysMesh, tenantId: string, roles: string[]): Promise<User> {
  return activeUser(mesh, tenantId, roles);
}

/** The principal a user's access token would carry, signed in `authAgeS` seconds ago. */
export function userPrincipal(user: User, authAgeS = 10, permissions: Iterable<string> = effectivePermissions(user.roleIds)): Principal {
  return { id: user.id, kind: "user", tenantId: user.tenantId, permissions: new Set(permissions), authTime: Math.floor(Date.now() / 1000) - authAgeS };
}

/** ApiKeyService as `principal`, on `service` (keys by default). */
export function apiKeysAs(mesh: KeysMesh, principal: Principal, service: Started = mesh.keys): Client<typeof ApiKeyService> {
  return clientFor(ApiKeyService, service.baseUrl, service.issueToken(principal));
}

/** ApiKeyService as a Bulwark service verifying keys (any tenant). */
export function verifierOn(service: Started): Client<typeof ApiKeyService> {
  return clientFor(ApiKeyService, service.baseUrl, service.issueToken({ id: "svc_verifier", kind: "service", permissions: new Set(["keys.api_keys.verify"]) }));
}

/** An event keys recorded. */
export interface KeysEvent {
  readonly type: string;
  readonly aggregateId: string;
  readonly tenantId: string;
  readonly bytes: Buffer;
  readonly payload: Uint8Array;
  readonly headers: string;
}

/** Every event keys recorded, oldest first (the raw envelope bytes too, to grep for secrets). */
export async function keysEvents(mesh: KeysMesh): Promise<KeysEvent[]> {
  const rows = await adminQuery<{ envelope: Buffer; headers: unknown }>(`select envelope, headers from "${mesh.keys.config.DATABASE_SCHEMA}".outbox order by created_at, id`);
  const prefix = `${mesh.prefix}.keys.`;
  return rows.map((r) => {
    const e = fromBinary(EnvelopeSchema, r.envelope);
    return { type: e.type.slice(prefix.length), aggregateId: e.aggregateId, tenantId: e.tenantId, bytes: r.envelope, payload: e.payload?.value ?? new Uint8Array(), headers: JSON.stringify(r.headers) };
  });
}

/** Runs SQL on keys' schema as the superuser. */
export async function keysQuery<R extends Record<string, unknown>>(mesh: KeysMesh, sql: string, params: unknown[] = []): Promise<R[]> {
  return adminQuery<R>(sql.replaceAll("$schema", `"${mesh.keys.config.DATABASE_SCHEMA}"`), params);
}
