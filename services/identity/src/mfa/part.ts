import type { ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";

/** The entities of the mfa part (TOTP, recovery codes and MFA challenges). */
export const mfaEntities = [];

/** The services of the mfa part. */
export function mfaRegistrations(_ctx: IdentityContext): ServiceRegistration[] {
  return [];
}
