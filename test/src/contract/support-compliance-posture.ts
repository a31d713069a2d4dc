/**
 * What the posture, access-review and retention tests share: tenancy, keys,
 * identity and compliance started as one mesh (one subject prefix, each
 * knowing where the others answer; audit too when asked, else AUDIT_URL
 * names a port nobody listens on), compliance with an injectable clock, and
 * clients of its posture, review and retention APIs acting as a principal.
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { AccessReviewService, EnvelopeSchema, PostureService, RetentionService, TenancyService } from "@bulwark/contracts";
import { auditModule } from "@bulwark/audit";
import { complianceContext, complianceModuleOf, complianceParts, type ComplianceContext } from "@bulwark/compliance";
import { effectivePermissions, type Principal } from "@bulwark/core";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { createServer, type AddressInfo } from "node:net";
import { adminQuery, bootstrapToken, clientFor, dropTestService, startTestService, type Started } from "../support/harness.js";
import { testKeysModule } from "./support-apikeys.js";
import type { IdentityMesh } from "./support-identity.js";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The four services of one test file and compliance's clock. */
export interface PostureMesh extends IdentityMesh {
  readonly keys: Started;
  readonly compliance: Started;
  /** Audit, when started with `{ audit: true }` (it records the mesh's streams and seals through keys). */
  readonly audit: Started | undefined;
  /** Stops audit (as if it were down), keeping its schema until `stop`. */
  stopAudit(): Promise<void>;
  readonly prefix: string;
  /** Compliance's parts' shared context (its clients, its clock). */
  readonly ctx: ComplianceContext;
  /** Moves compliance's clock `days` days from the real time (0 = real time). */
  shift(days: number): void;
  /** Compliance's time now. */
  now(): Date;
}

const auditEnv = { AUDIT_LOG_NAME: "audit.test", AUDIT_CHECKPOINT_INTERVAL_MS: "3600000" };

/** Starts tenancy, keys, identity (audit with `{ audit: true }`) and compliance wired to one another. */
export async function startPostureMesh(opts: { audit?: boolean } = {}): Promise<PostureMesh> {
  const prefix = `t${nuid.next().toLowerCase()}`;
  const [tp, ip, kp, cp, ap] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const urls = { TENANCY_URL: `http://127.0.0.1:${tp}`, IDENTITY_URL: `http://127.0.0.1:${ip}`, KEYS_URL: `http://127.0.0.1:${kp}`, AUDIT_URL: `http://127.0.0.1:${ap}`, COMPLIANCE_URL: `http://127.0.0.1:${cp}` };
  let offsetMs = 0;
  const clock = (): Date => new Date(Date.now() + offsetMs);
  const tenancy = await startTestService(tenancyModule, { prefix, env: { ...urls, PORT: String(tp) } });
  const keys = await startTestService(testKeysModule, { prefix, env: { ...urls, PORT: String(kp) } });
  const identity = await startTestService(identityModule, { prefix, env: { ...urls, PORT: String(ip) } });
  let audit: Started | undefined;
  let auditUp = false;
  if (opts.audit === true) {
    Object.assign(process.env, auditEnv);
    audit = await startTestService(auditModule, { prefix, env: { ...urls, ...auditEnv, PORT: String(ap) }, keep: true });
    auditUp = true;
  }
  const complianceModule = complianceModuleOf(complianceParts, { clock });
  const compliance = await startTestService(complianceModule, { prefix, env: { ...urls, PORT: String(cp) } });
  return {
    prefix,
    tenancy,
    identity,
    keys,
    compliance,
    audit,
    async stopAudit() {
      if (auditUp) await audit?.running.stop();
      auditUp = false;
    },
    ctx: complianceContext(compliance.running.deps),
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    shift(days) {
      offsetMs = days * 86_400_000;
    },
    now: clock,
    async stop() {
      await compliance.stop();
      if (auditUp) await audit?.running.stop();
      await identity.stop();
      await keys.stop();
      await tenancy.stop();
      if (audit !== undefined) {
        await dropTestService(audit.config.DATABASE_SCHEMA, prefix, "audit");
        await adminQuery(`drop role if exists "${audit.config.DATABASE_SCHEMA}_app_retention"`).catch(() => undefined);
      }
    },
  };
}

/** A principal of `tenantId` holding `permissions` on compliance. */
export function compliancePrincipal(tenantId: string, permissions: Iterable<string>, id = `usr_${nuid.next().toLowerCase()}`): Principal {
  return { id, kind: "user", tenantId, permissions: new Set(permissions) };
}

/** Compliance's posture, review and retention clients as `principal` (or anonymous, or with a raw token). */
export function complianceAs(mesh: PostureMesh, principal: Principal | string | undefined, headers: Record<string, string> = {}): { posture: Client<typeof PostureService>; reviews: Client<typeof AccessReviewService>; retention: Client<typeof RetentionService> } {
  const token = principal === undefined ? undefined : typeof principal === "string" ? principal : mesh.compliance.issueToken(principal);
  const url = mesh.compliance.baseUrl;
  return {
    posture: clientFor(PostureService, url, token, "grpc", headers),
    reviews: clientFor(AccessReviewService, url, token, "grpc", headers),
    retention: clientFor(RetentionService, url, token, "grpc", headers),
  };
}

/** The types (`<aggregate>.<verb>`) of the events compliance recorded for a tenant, oldest first. */
export async function complianceEventTypes(mesh: PostureMesh, tenantId: string): Promise<string[]> {
  const rows = await adminQuery<{ envelope: Buffer }>(`select envelope from "${mesh.compliance.config.DATABASE_SCHEMA}".outbox where tenant_id = $1 order by created_at, id`, [tenantId]);
  const p = `${mesh.prefix}.compliance.`;
  return rows.map((r) => fromBinary(EnvelopeSchema, r.envelope).type).map((t) => (t.startsWith(p) ? t.slice(p.length) : t));
}

/** Every compliance permission these parts define. */
export const postureReader = ["compliance.posture.read", "compliance.posture.evaluate", "compliance.reports.read"];
/** A reviewer who may revoke any grant: the review permissions, and an Owner's (nobody revokes from someone more privileged than themselves). */
export const reviewManager = [...new Set(["compliance.access_reviews.read", "compliance.access_reviews.manage", "compliance.access_reviews.decide", "identity.roles.assign", "identity.roles.assign_owner", ...effectivePermissions(["system:owner"])])];
export const retentionManager = ["compliance.retention.read", "compliance.retention.manage"];
