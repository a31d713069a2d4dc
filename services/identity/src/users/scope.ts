import { currentContext, failedPrecondition } from "@bulwark/core";

/**
 * The tenant a UserService or RoleService call acts in: a tenant
 * principal's own tenant, or the one a platform operator names with the
 * `bulwark-tenant` header (the pipeline puts either in the context). These
 * APIs never act across tenants, so without one the call is refused.
 */
export function tenantInScope(): string {
  const tenantId = currentContext()?.tenantId;
  if (tenantId === undefined || tenantId === "") throw failedPrecondition("no tenant in scope: a platform principal must name the tenant with the bulwark-tenant header");
  return tenantId;
}
