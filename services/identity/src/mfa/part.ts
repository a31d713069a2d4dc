import { file_bulwark_identity_v1_mfa_service, MfaService } from "@bulwark/contracts";
import type { ServiceRegistration } from "@bulwark/server";
import { authService, signInThrottle } from "../auth/registrations.js";
import type { IdentityContext } from "../context.js";
import { MfaServiceImpl } from "./mfa-service.js";
import { RecoveryCodeEntity } from "./recovery-code.entity.js";
import { SecretBox } from "./secret-box.js";
import { TotpCredentialEntity } from "./totp-credential.entity.js";

/** The entities of the mfa part (TOTP credentials and recovery codes; MFA challenges belong to auth). */
export const mfaEntities = [TotpCredentialEntity, RecoveryCodeEntity];

/** The services of the mfa part: MfaService, finishing sign-ins through the shared AuthService. */
export function mfaRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const { deps } = ctx;
  const impl = new MfaServiceImpl({
    db: deps.db,
    events: deps.events,
    box: new SecretBox(deps.config.BULWARK_SERVICE_SECRET),
    throttle: signInThrottle(ctx),
    signIn: authService(ctx),
    afterCommit: () => deps.relay.nudge(),
  });
  return [{ service: MfaService, file: file_bulwark_identity_v1_mfa_service, impl: impl as never }];
}
