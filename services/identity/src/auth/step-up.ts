import type { TenancyClient } from "@bulwark/contracts";
import { currentContext, failedPrecondition, unauthenticated, type Principal } from "@bulwark/core";
import { tenantPolicy } from "./policy.js";

/** Seconds an `auth_time` may lie ahead of this clock (skew between replicas). */
const clockSkewS = 5;

/**
 * True if the principal authenticated (signed in or re-authenticated)
 * within the last `windowS` seconds. A credential without `auth_time` (an
 * API key, a relayed call, an older token) never counts as recent.
 */
export function authenticatedWithin(principal: Pick<Principal, "authTime">, windowS: number, nowMs = Date.now()): boolean {
  const at = principal.authTime;
  if (at === undefined) return false;
  const ageS = nowMs / 1000 - at;
  return ageS <= windowS && ageS >= -clockSkewS;
}

/**
 * Step-up ("sudo mode"): refuses a sensitive change to the caller's own
 * account — adding a passkey, enrolling TOTP beside another factor,
 * regenerating recovery codes, changing their email — unless the caller
 * authenticated within the tenant's reauthentication window, so a stolen
 * access token alone cannot add a credential or move the account. The
 * answer is always FAILED_PRECONDITION with a message that says
 * re-authentication is required (AuthService.Reauthenticate fixes it).
 */
export async function requireRecentAuthentication(tenancy: Pick<TenancyClient, "getSecurityPolicy">, what: string): Promise<void> {
  const principal = currentContext()?.principal;
  const tenantId = principal?.tenantId;
  if (principal === undefined || tenantId === undefined) throw unauthenticated();
  const { reauthenticationWindowS } = await tenantPolicy(tenancy, tenantId);
  if (!authenticatedWithin(principal, reauthenticationWindowS)) throw reauthenticationRequired(what, reauthenticationWindowS);
}

/** The one refusal of a stale authentication. */
export function reauthenticationRequired(what: string, windowS: number): Error {
  const [n, unit] = windowS % 60 === 0 ? [windowS / 60, "minute"] : [windowS, "second"];
  const window = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return failedPrecondition(`re-authentication required: ${what} needs an authentication within the last ${window}; call AuthService.Reauthenticate, then retry`);
}
