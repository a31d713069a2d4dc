import { currentContext, type Principal } from "./context.js";
import { failedPrecondition, unauthenticated } from "./errors.js";

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

/** The one refusal of a stale authentication. */
export function reauthenticationRequired(what: string, windowS: number): Error {
  const [n, unit] = windowS % 60 === 0 ? [windowS / 60, "minute"] : [windowS, "second"];
  const window = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return failedPrecondition(`re-authentication required: ${what} needs an authentication within the last ${window}; call AuthService.Reauthenticate, then retry`);
}

/**
 * Step-up ("sudo mode") in any service: refuses a sensitive action unless
 * the calling principal authenticated within its tenant's
 * reauthentication window (`windowOf` reads it from the tenant policy), so
 * a stolen access token alone cannot add a credential or mint an API key.
 * The answer is always FAILED_PRECONDITION with a message that says
 * re-authentication is required (AuthService.Reauthenticate fixes it).
 */
export async function requireRecentAuthenticationWithin(windowOf: (tenantId: string) => Promise<number>, what: string): Promise<void> {
  const principal = currentContext()?.principal;
  const tenantId = principal?.tenantId;
  if (principal === undefined || tenantId === undefined) throw unauthenticated();
  const windowS = await windowOf(tenantId);
  if (!authenticatedWithin(principal, windowS)) throw reauthenticationRequired(what, windowS);
}
