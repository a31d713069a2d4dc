/**
 * What the audit tests share: tenancy, keys and audit started for real on
 * one subject prefix (audit records both's streams, and seals through
 * keys), tenants created by the bootstrap operator, typed AuditLogService
 * clients acting as a principal, and the superuser's view of audit's tables.
 */
import assert from "node:assert/strict";
import type { Client } from "@connectrpc/connect";
import { AuditLogService, Region, TenancyService } from "@bulwark/contracts";
import type { Principal } from "@bulwark/core";
import { auditModule } from "@bulwark/audit";
import { identityModule } from "@bulwark/identity";
import { keysModule } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { adminQuery, bootstrapToken, clientFor, dropTestService, eventually, startTestService, uniqueSlug, type Started } from "../support/harness.js";

/** Tenancy, keys and audit for one test file. */
export interface AuditMesh {
  readonly tenancy: Started;
  readonly keys: Started;
  /** Identity, when started with `{ identity: true }` (on the same keys). */
  readonly identity: Started;
  audit: Started;
  readonly tenancyOps: Client<typeof TenancyService>;
  /** Starts audit again on the same schema (after `stopAudit`). */
  restartAudit(): Promise<void>;
  /** Stops audit, keeping its schema and consumers. */
  stopAudit(): Promise<void>;
  stop(): Promise<void>;
}

const auditEnv = { AUDIT_LOG_NAME: "audit.test", AUDIT_CHECKPOINT_INTERVAL_MS: "3600000" };

/** Starts tenancy, keys, then audit (it records their streams). */
export async function startAuditMesh(opts: { identity?: boolean } = {}): Promise<AuditMesh> {
  const tenancy = await startTestService(tenancyModule);
  const keys = await startTestService(keysModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl } });
  const identity = opts.identity === true ? await startTestService(identityModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl, KEYS_URL: keys.baseUrl } }) : undefined;
  const env = { ...auditEnv, TENANCY_URL: tenancy.baseUrl, KEYS_URL: keys.baseUrl };
  Object.assign(process.env, auditEnv);
  let audit = await startTestService(auditModule, { prefix: tenancy.prefix, env, keep: true });
  let stopped = false;
  const mesh: AuditMesh = {
    tenancy,
    keys,
    get identity(): Started {
      if (identity === undefined) throw new Error("this audit mesh runs without identity");
      return identity;
    },
    audit,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async stopAudit() {
      await audit.running.stop();
      stopped = true;
    },
    async restartAudit() {
      audit = await startTestService(auditModule, { prefix: tenancy.prefix, env, keep: true, reuse: { schema: audit.config.DATABASE_SCHEMA, prefix: tenancy.prefix } });
      mesh.audit = audit;
      stopped = false;
    },
    async stop() {
      if (!stopped) await audit.running.stop();
      await identity?.stop();
      await keys.stop();
      await tenancy.stop();
      await dropTestService(audit.config.DATABASE_SCHEMA, tenancy.prefix, "audit");
      await adminQuery(`drop role if exists "${audit.config.DATABASE_SCHEMA}_app_retention"`).catch(() => undefined);
    },
  };
  return mesh;
}

/** Creates an active tenant and returns its id. */
export async function newTenant(mesh: AuditMesh): Promise<string> {
  const { tenant } = await mesh.tenancyOps.createTenant({ slug: uniqueSlug("a"), displayName: "Audit Co", region: Region.EU });
  assert.ok(tenant !== undefined);
  return tenant.id;
}

/** Every audit permission of a tenant. */
export const auditPermissions = ["audit.records.read", "audit.records.list", "audit.records.export", "audit.records.verify"];

/** An AuditLogService client acting as `principal`. */
export function auditAs(mesh: AuditMesh, principal: Principal): Client<typeof AuditLogService> {
  return clientFor(AuditLogService, mesh.audit.baseUrl, mesh.audit.issueToken(principal));
}

/** A client of a user of a tenant holding `permissions` (every audit permission by default). */
export function auditUser(mesh: AuditMesh, tenantId: string, permissions: Iterable<string> = auditPermissions): Client<typeof AuditLogService> {
  return auditAs(mesh, { id: `usr_${nuid.next().toLowerCase()}`, kind: "user", tenantId, permissions: new Set(permissions) });
}

/** A client of the bootstrap operator. */
export function auditOperator(mesh: AuditMesh): Client<typeof AuditLogService> {
  return clientFor(AuditLogService, mesh.audit.baseUrl, bootstrapToken);
}

/** Runs SQL on audit's schema as the superuser (`$schema` names it). */
export async function auditQuery<R extends Record<string, unknown>>(mesh: AuditMesh, sql: string, params: unknown[] = []): Promise<R[]> {
  return adminQuery<R>(sql.replaceAll("$schema", `"${mesh.audit.config.DATABASE_SCHEMA}"`), params);
}

/** Waits until the tenant's trail holds at least `n` entries (of `action`, if given). */
export async function waitForEntries(mesh: AuditMesh, tenantId: string, n: number, action?: string): Promise<void> {
  await eventually(async () => {
    const [row] = await auditQuery<{ n: string }>(mesh, `select count(*) as n from $schema.entries where tenant_id = $1 ${action !== undefined ? "and action = $2" : ""}`, action !== undefined ? [tenantId, action] : [tenantId]);
    return Number(row?.n ?? 0) >= n;
  }, 15_000);
}
