import type { ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";

/** The entities of the passkeys part (WebAuthn passkeys). */
export const passkeysEntities = [];

/** The services of the passkeys part. */
export function passkeysRegistrations(_ctx: IdentityContext): ServiceRegistration[] {
  return [];
}
