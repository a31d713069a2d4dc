import { file_bulwark_identity_v1_mfa_service, MfaService } from "@bulwark/contracts";
import type { ServiceRegistration } from "@bulwark/server";
import { authService, checkTotpCodesWith, signInThrottle } from "../auth/registrations.js";
import type { IdentityContext } from "../context.js";
import { MfaServiceImpl } from "./mfa-service.js";
import { RecoveryCodeEntity } from "./recovery-code.entity.js";
import { TotpCredentialEntity } from "./totp-credential.entity.js";

/** The entities of the mfa part (TOTP credentials and recovery codes; MFA challenges belong to auth). */
export const mfaEntities = [TotpCredentialEntity, RecoveryCodeEntity];

/**
 * The services of the mfa part: MfaService, finishing sign-ins through the
 * shared AuthService, and checking the TOTP codes of its Reauthenticate.
 */
export function mfaRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const { deps } = ctx;
  const impl = new MfaServiceImpl({
    db: deps.db,
    events: deps.events,
    sealer: ctx.sealer,
    revoked: deps.revokedSessions,
    throttle: signInThrottle(ctx),
    signIn: authService(ctx),
    tenancy: ctx.tenancy,
    afterCommit: () => deps.relay.nudge(),
    logger: deps.logger.child({ part: "mfa" }),
  });
  checkTotpCodesWith(ctx, { spend: (em, tenantId, userId, code) => impl.spendTotpCode(em, tenantId, userId, code) });
  return [{ service: MfaService, file: file_bulwark_identity_v1_mfa_service, impl: impl as never }];
}
