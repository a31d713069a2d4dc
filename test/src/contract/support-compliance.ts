/**
 * What the compliance tests share: tenancy, keys, identity, audit and
 * compliance started for real on one subject prefix (compliance runs its
 * sagas across the other four; audit records every service's stream,
 * compliance's included), a clock compliance reads that tests move forward,
 * tenants and users created through the real APIs, typed clients acting as
 * a tenant's people, and scans of every schema of the mesh.
 */
import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import type { Client } from "@connectrpc/connect";
import { DataSubjectRequestService, Region, RequestState, TenancyService, TenantDeletionService, UserService, type DataSubjectRequest } from "@bulwark/contracts";
import { auditModule } from "@bulwark/audit";
import { complianceModuleOf, complianceParts, type CompliancePart } from "@bulwark/compliance";
import { identityModule } from "@bulwark/identity";
import { keysModule } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { systemRole } from "@bulwark/core";
import { nuid } from "@nats-io/nuid";
import { adminQuery, bootstrapToken, clientFor, eventually, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { strongPassword, uniqueEmail } from "./support-identity.js";

/** A clock tests move forward (compliance reads it for grace periods and expiries). */
export class TestClock {
  offsetMs = 0;
  readonly now = (): Date => new Date(Date.now() + this.offsetMs);
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}

/** The five services, started for one test file. */
export interface ComplianceMesh {
  readonly tenancy: Started;
  readonly identity: Started;
  keys: Started;
  readonly audit: Started;
  readonly compliance: Started;
  readonly clock: TestClock;
  readonly keysPort: number;
  readonly tenancyOps: Client<typeof TenancyService>;
  /** Stops keys (keeping its schema) as if it crashed; `restartKeys` brings it back on the same port. */
  stopKeys(): Promise<void>;
  restartKeys(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const auditEnv = { AUDIT_LOG_NAME: "audit.test", AUDIT_CHECKPOINT_INTERVAL_MS: "3600000" };

/** Starts tenancy, keys, identity, audit and compliance as one mesh; `env` goes to compliance. */
export async function startComplianceMesh(env: Record<string, string> = {}, parts: readonly CompliancePart[] = complianceParts): Promise<ComplianceMesh> {
  const clock = new TestClock();
  const tenancy = await startTestService(tenancyModule);
  const prefix = tenancy.prefix;
  const [keysPort, identityPort] = [await freePort(), await freePort()];
  const keysUrl = `http://127.0.0.1:${keysPort}`;
  const identityUrl = `http://127.0.0.1:${identityPort}`;
  // Keys asks identity for API-key owners' permissions: it learns identity's address before identity starts.
  const keysEnv = { TENANCY_URL: tenancy.baseUrl, IDENTITY_URL: identityUrl, PORT: String(keysPort) };
  let keys = await startTestService(keysModule, { prefix, env: keysEnv, keep: true });
  const keysReuse = { schema: keys.config.DATABASE_SCHEMA, prefix };
  const identity = await startTestService(identityModule, { prefix, env: { TENANCY_URL: tenancy.baseUrl, KEYS_URL: keysUrl, PORT: String(identityPort) } });
  Object.assign(process.env, auditEnv);
  const audit = await startTestService(auditModule, { prefix, env: { ...auditEnv, TENANCY_URL: tenancy.baseUrl, KEYS_URL: keysUrl, IDENTITY_URL: identity.baseUrl }, keep: true });
  const compliance = await startTestService(complianceModuleOf(parts, { clock: clock.now }), {
    prefix,
    env: {
      TENANCY_URL: tenancy.baseUrl,
      KEYS_URL: keysUrl,
      IDENTITY_URL: identity.baseUrl,
      AUDIT_URL: audit.baseUrl,
      COMPLIANCE_PARTICIPANTS: "tenancy,identity,keys,audit",
      COMPLIANCE_SAGA_POLL_MS: "100",
      COMPLIANCE_RETRY_BASE_MS: "100",
      COMPLIANCE_RETRY_MAX_MS: "400",
      ...env,
    },
  });
  let keysUp = true;
  const mesh: ComplianceMesh = {
    tenancy,
    identity,
    keys,
    audit,
    compliance,
    clock,
    keysPort,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async stopKeys() {
      await keys.running.stop();
      keysUp = false;
    },
    async restartKeys() {
      keys = await startTestService(keysModule, { reuse: keysReuse, env: keysEnv, keep: true });
      mesh.keys = keys;
      keysUp = true;
    },
    async stop() {
      await compliance.stop();
      await audit.running.stop();
      await identity.stop();
      if (keysUp) await keys.running.stop();
      // Dropped as startTestService would have without `keep`.
      const { dropTestService } = await import("../support/harness.js");
      await dropTestService(keysReuse.schema, prefix, "keys");
      await tenancy.stop();
      await dropTestService(audit.config.DATABASE_SCHEMA, prefix, "audit");
      await adminQuery(`drop role if exists "${audit.config.DATABASE_SCHEMA}_app_retention"`).catch(() => undefined);
    },
  };
  return mesh;
}

/** Creates an active tenant and returns its id. */
export async function newTenant(mesh: ComplianceMesh): Promise<string> {
  const { tenant } = await mesh.tenancyOps.createTenant({ slug: uniqueSlug("c"), displayName: "Compliance Co", region: Region.EU });
  assert.ok(tenant !== undefined);
  return tenant.id;
}

/** Identity's UserService as the bootstrap operator inside a tenant. */
export function usersIn(mesh: ComplianceMesh, tenantId: string): Client<typeof UserService> {
  return clientFor(UserService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantId });
}

/** An active user of the tenant (invited and accepted through identity); returns their id and email. */
export async function activeUser(mesh: ComplianceMesh, tenantId: string, roleIds: string[] = ["system:member"], email = uniqueEmail("subject")): Promise<{ id: string; email: string }> {
  const users = usersIn(mesh, tenantId);
  const res = await users.createUser({ email, displayName: "Dana Subject", roleIds, returnInvitationToken: true });
  await users.acceptInvitation({ invitationToken: res.invitationToken, password: strongPassword() });
  return { id: res.user!.id, email };
}

/** Every compliance permission a tenant's compliance officer holds. */
export const officerPermissions = [
  "compliance.requests.create",
  "compliance.requests.read",
  "compliance.requests.manage",
  "compliance.exports.create",
  "compliance.exports.read",
  "compliance.erasures.create",
  "compliance.erasures.approve",
  "compliance.erasures.read",
  "compliance.legal_holds.manage",
];

/**
 * An officer who may correct a member's data: the officer's permissions,
 * identity.users.update, and every permission a Member holds (nobody
 * corrects someone more privileged than themselves).
 */
export const rectifierPermissions = [...officerPermissions, "identity.users.update", ...systemRole("system:member")!.permissions];

/** DataSubjectRequestService as a person of a tenant holding `permissions`. */
export function requestsAs(mesh: ComplianceMesh, tenantId: string, permissions: Iterable<string> = officerPermissions, id = `usr_${nuid.next().toLowerCase()}`): Client<typeof DataSubjectRequestService> {
  return clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, mesh.compliance.issueToken({ id, kind: "user", tenantId, permissions: new Set(permissions) }));
}

/** TenantDeletionService as the bootstrap operator. */
export function deletionsAsOperator(mesh: ComplianceMesh): Client<typeof TenantDeletionService> {
  return clientFor(TenantDeletionService, mesh.compliance.baseUrl, bootstrapToken);
}

/** Waits until audit's trail of the tenant holds `n` entries matching `where` (SQL on entries, `$1` the tenant, `$2` `param`). */
export async function auditEntriesReach(mesh: ComplianceMesh, tenantId: string, where: string, param: string, n = 1): Promise<void> {
  await eventually(async () => {
    const [row] = await adminQuery<{ n: string }>(`select count(*)::text as n from "${mesh.audit.config.DATABASE_SCHEMA}".entries where tenant_id = $1 and (${where})`, [tenantId, param]);
    return Number(row?.n ?? 0) >= n;
  }, 15_000, 100);
}

/** Waits until the request reaches `state` (the saga runs in the background). */
export async function requestReaches(client: Client<typeof DataSubjectRequestService>, id: string, state: RequestState, timeoutMs = 20_000): Promise<DataSubjectRequest> {
  let last: DataSubjectRequest | undefined;
  await eventually(async () => {
    last = (await client.getDataSubjectRequest({ id })).request;
    return last?.state === state;
  }, timeoutMs, 100).catch(() => {
    throw new Error(`request ${id} did not reach ${RequestState[state]}: ${JSON.stringify(last?.steps.map((s) => ({ service: s.service, state: s.state, error: s.lastError })))} state ${last === undefined ? "?" : RequestState[last.state]} ${last?.stateReason ?? ""}`);
  });
  return last!;
}

/** The schemas of the mesh's services, by service. */
export function schemasOf(mesh: ComplianceMesh): string[] {
  return [mesh.tenancy, mesh.identity, mesh.keys, mesh.audit, mesh.compliance].map((s) => s.config.DATABASE_SCHEMA);
}

/**
 * Every place `needle` appears in plaintext in any text-like column (text,
 * varchar, char, jsonb, json, text[]) of any table of `schemas`: a list of
 * `schema.table.column`.
 */
export async function plaintextHits(schemas: readonly string[], needle: string): Promise<string[]> {
  const cols = await adminQuery<{ table_schema: string; table_name: string; column_name: string; data_type: string }>(
    `select c.table_schema, c.table_name, c.column_name, c.data_type from information_schema.columns c
     join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name and t.table_type = 'BASE TABLE'
     where c.table_schema = any($1) and (c.data_type in ('text', 'character varying', 'character', 'json', 'jsonb') or (c.data_type = 'ARRAY' and c.udt_name in ('_text', '_varchar')))`,
    [schemas],
  );
  const hits: string[] = [];
  for (const c of cols) {
    const rows = await adminQuery<{ n: string }>(`select count(*)::text as n from "${c.table_schema}"."${c.table_name}" where position(lower($1) in lower("${c.column_name}"::text)) > 0`, [needle]);
    if (rows[0]!.n !== "0") hits.push(`${c.table_schema}.${c.table_name}.${c.column_name}`);
  }
  return hits;
}
