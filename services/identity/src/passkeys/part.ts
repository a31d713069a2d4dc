import { file_bulwark_identity_v1_passkey_service, PasskeyService } from "@bulwark/contracts";
import type { ServiceRegistration } from "@bulwark/server";
import { authService, signInThrottle } from "../auth/registrations.js";
import type { IdentityContext } from "../context.js";
import { webAuthnConfig } from "./config.js";
import { PasskeyEntity } from "./passkey.entity.js";
import { PasskeyServiceImpl } from "./passkey-service.js";
import { WebAuthnChallengeEntity } from "./webauthn-challenge.entity.js";

/** The entities of the passkeys part (WebAuthn passkeys). */
export const passkeysEntities = [PasskeyEntity, WebAuthnChallengeEntity];

/**
 * The services of the passkeys part: PasskeyService, finishing its sign-ins
 * through the AuthService of the same started service. The WebAuthn
 * settings are read (and refused, naming the variable) here, at start.
 */
export function passkeysRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const { deps, tenancy } = ctx;
  const impl = new PasskeyServiceImpl({ db: deps.db, events: deps.events, tenancy, webauthn: webAuthnConfig(), auth: authService(ctx), throttle: signInThrottle(ctx), afterCommit: () => deps.relay.nudge(), logger: deps.logger.child({ part: "passkeys" }) });
  return [{ service: PasskeyService, file: file_bulwark_identity_v1_passkey_service, impl: impl as never }];
}
