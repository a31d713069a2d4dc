import { createApiKeyClient, createAuditLogClient, createTenancyClient, type ApiKeyClient, type AuditLogClient, type TenancyClient } from "@bulwark/contracts";
import { currentContext, failedPrecondition, runAsService } from "@bulwark/core";
import { createServiceTransport, type RuntimeDeps } from "@bulwark/server";

/** The clients posture, reviews and retention need beyond the shared context's identity and keys. */
export interface EvidenceClients {
  readonly tenancy: TenancyClient;
  readonly apiKeys: ApiKeyClient;
  /** Audit's log (AUDIT_URL), for the checkpoint a posture report is taken at. */
  readonly auditLog: AuditLogClient;
}

const clients = new WeakMap<RuntimeDeps, EvidenceClients>();

/** The tenancy, API-key and audit-log clients of one started service (created on first use). */
export function evidenceClients(deps: RuntimeDeps): EvidenceClients {
  let c = clients.get(deps);
  if (c === undefined) {
    c = {
      tenancy: createTenancyClient(createServiceTransport(deps.config.TENANCY_URL, deps.assertions, "tenancy")),
      apiKeys: createApiKeyClient(createServiceTransport(deps.config.KEYS_URL, deps.assertions, "keys")),
      auditLog: createAuditLogClient(createServiceTransport(deps.config.AUDIT_URL, deps.assertions, "audit")),
    };
    clients.set(deps, c);
  }
  return c;
}

/**
 * The tenant a posture, review or retention call acts in: a tenant
 * principal's own, or the one a platform operator names with the
 * `bulwark-tenant` header. These APIs never act across tenants.
 */
export function tenantOfCall(): string {
  const tenantId = currentContext()?.tenantId;
  if (tenantId === undefined || tenantId === "") throw failedPrecondition("no tenant in scope: a platform principal must name the tenant with the bulwark-tenant header");
  return tenantId;
}

/** The id of the calling principal, for the evidence (who decided, who closed). */
export function callerId(): string {
  return currentContext()?.principal?.id ?? "unknown";
}

/**
 * Runs `fn` as the compliance service inside one tenant: calls to identity,
 * keys and tenancy carry compliance's own service principal for that tenant
 * (never the caller's credential, which may not reach identity's data), so
 * the evidence is complete whoever asked for it.
 */
export function asCompliance<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
  return runAsService("compliance", tenantId, fn);
}
