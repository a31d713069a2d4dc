/**
 * What the keys contract tests share: tenancy and keys started for real on
 * one subject prefix (keys asks tenancy for each tenant's rotation
 * period), tenants created by the bootstrap operator, typed clients of the
 * keys APIs acting as a principal, and the events keys recorded.
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { EncryptionService, EnvelopeSchema, Region, SecretService, TenancyService, WebhookService, type KeysClients } from "@bulwark/contracts";
import type { Principal } from "@bulwark/core";
import { keysModule } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { adminQuery, bootstrapToken, clientFor, startTestService, uniqueSlug, type Started } from "../support/harness.js";

/** A master keyring for tests: two versions, v2 active. */
export const testMasterKeys = {
  v1: "v1:" + Buffer.alloc(32, 1).toString("base64"),
  v2: "v2:" + Buffer.alloc(32, 2).toString("base64"),
};

/** Tenancy and keys, started for one test file. */
export interface KeysMesh {
  readonly tenancy: Started;
  readonly keys: Started;
  readonly tenancyOps: Client<typeof TenancyService>;
  stop(): Promise<void>;
}

/** Starts tenancy, then keys pointed at it (`env` goes to keys). */
export async function startKeysMesh(env: Record<string, string> = {}): Promise<KeysMesh> {
  const tenancy = await startTestService(tenancyModule);
  const keys = await startTestService(keysModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl, ...env } }).catch(async (err: unknown) => {
    await tenancy.stop();
    throw err;
  });
  return {
    tenancy,
    keys,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async stop() {
      await keys.stop();
      await tenancy.stop();
    },
  };
}

/** Creates an active tenant and returns its id. */
export async function newTenant(mesh: KeysMesh): Promise<string> {
  const { tenant } = await mesh.tenancyOps.createTenant({ slug: uniqueSlug("k"), displayName: "Keys Co", region: Region.EU });
  assert.ok(tenant !== undefined);
  return tenant.id;
}

/** Typed clients of every keys API for one bearer token. */
export function keysClients(baseUrl: string, token: string | undefined, headers: Record<string, string> = {}): KeysClients {
  return {
    encryption: clientFor(EncryptionService, baseUrl, token, "grpc", headers),
    secrets: clientFor(SecretService, baseUrl, token, "grpc", headers),
    webhooks: clientFor(WebhookService, baseUrl, token, "grpc", headers),
  };
}

/** Clients acting as `principal`. */
export function keysAs(mesh: KeysMesh, principal: Principal): KeysClients {
  return keysClients(mesh.keys.baseUrl, mesh.keys.issueToken(principal));
}

/** A user of a tenant holding exactly `permissions`. */
export function userOf(mesh: KeysMesh, tenantId: string, permissions: Iterable<string>, id = `usr_${nuid.next().toLowerCase()}`): KeysClients {
  return keysAs(mesh, { id, kind: "user", tenantId, permissions: new Set(permissions) });
}

/** Every keys permission of a tenant. */
export const allKeysPermissions = [
  "keys.encryption.encrypt",
  "keys.encryption.decrypt",
  "keys.encryption.read",
  "keys.encryption.rotate",
  "keys.encryption.destroy",
  "keys.encryption.rewrap",
  "keys.subject_keys.destroy",
  "keys.secrets.read",
  "keys.secrets.list",
  "keys.secrets.write",
  "keys.secrets.delete",
  "keys.webhooks.read",
  "keys.webhooks.manage",
  "keys.webhooks.sign",
];

/** An event keys recorded in its outbox. */
export interface KeysEvent {
  /** `<aggregate>.<verb>`, e.g. `key_ring.destroyed`. */
  readonly type: string;
  readonly tenantId: string;
  readonly aggregateId: string;
  readonly actorId: string;
  /** The envelope's bytes, for checks that no secret appears in them. */
  readonly bytes: Buffer;
  readonly payload: Uint8Array;
}

/** Every event keys recorded (of one tenant, if given), oldest first. */
export async function keysEvents(mesh: KeysMesh, tenantId?: string): Promise<KeysEvent[]> {
  const rows = await adminQuery<{ envelope: Buffer }>(`select envelope from "${mesh.keys.config.DATABASE_SCHEMA}".outbox ${tenantId !== undefined ? "where tenant_id = $1" : ""} order by created_at, id`, tenantId !== undefined ? [tenantId] : []);
  const prefix = `${mesh.keys.prefix}.keys.`;
  return rows.map((r) => {
    const e = fromBinary(EnvelopeSchema, r.envelope);
    return { type: e.type.startsWith(prefix) ? e.type.slice(prefix.length) : e.type, tenantId: e.tenantId, aggregateId: e.aggregateId, actorId: e.actor?.id ?? "", bytes: r.envelope, payload: e.payload?.value ?? new Uint8Array() };
  });
}

/** Runs SQL on keys' schema as the superuser (`$schema` names it). */
export async function keysQuery<R extends Record<string, unknown>>(mesh: KeysMesh, sql: string, params: unknown[] = []): Promise<R[]> {
  return adminQuery<R>(sql.replaceAll("$schema", `"${mesh.keys.config.DATABASE_SCHEMA}"`), params);
}
