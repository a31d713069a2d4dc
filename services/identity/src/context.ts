import { createTenancyClient, type TenancyClient } from "@bulwark/contracts";
import { createServiceTransport, type RuntimeDeps } from "@bulwark/server";

/**
 * What identity's handlers share beyond the runtime: a typed client of the
 * tenancy service (tenant lookup by slug, security policy), calling as
 * identity on behalf of the current principal.
 */
export interface IdentityContext {
  readonly deps: RuntimeDeps;
  readonly tenancy: TenancyClient;
}

const contexts = new WeakMap<RuntimeDeps, IdentityContext>();

/** The identity context of one started service (created on first use). */
export function identityContext(deps: RuntimeDeps): IdentityContext {
  let ctx = contexts.get(deps);
  if (ctx === undefined) {
    ctx = { deps, tenancy: createTenancyClient(createServiceTransport(deps.config.TENANCY_URL, deps.assertions, "tenancy")) };
    contexts.set(deps, ctx);
  }
  return ctx;
}
