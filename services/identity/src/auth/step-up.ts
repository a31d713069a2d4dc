import type { TenancyClient } from "@bulwark/contracts";
import { requireRecentAuthenticationWithin } from "@bulwark/core";
import { tenantPolicy } from "./policy.js";

export { authenticatedWithin, reauthenticationRequired } from "@bulwark/core";

/**
 * Step-up ("sudo mode") for identity's sensitive self-service changes —
 * adding a passkey, enrolling TOTP beside another factor, regenerating
 * recovery codes, changing their email — against the tenant's
 * reauthentication window; the check itself is shared with the other
 * services (`requireRecentAuthenticationWithin` in @bulwark/core).
 */
export async function requireRecentAuthentication(tenancy: Pick<TenancyClient, "getSecurityPolicy">, what: string): Promise<void> {
  await requireRecentAuthenticationWithin(async (tenantId) => (await tenantPolicy(tenancy, tenantId)).reauthenticationWindowS, what);
}
