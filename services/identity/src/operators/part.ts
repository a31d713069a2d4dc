import { file_bulwark_identity_v1_operator_service, OperatorService } from "@bulwark/contracts";
import type { ServiceRegistration } from "@bulwark/server";
import { PasswordHasher } from "../auth/passwords.js";
import { SigningKeyStore } from "../auth/signing-keys.js";
import { SignInThrottle } from "../auth/throttle.js";
import type { IdentityContext } from "../context.js";
import { OperatorEntity, OperatorMfaChallengeEntity, OperatorRefreshTokenEntity, OperatorSessionEntity, OperatorTotpCredentialEntity } from "./entities.js";
import { OperatorServiceImpl } from "./operator-service.js";

/** The entities of the operators part (platform operator accounts, their sessions, second factors and refresh tokens). */
export const operatorsEntities = [OperatorEntity, OperatorSessionEntity, OperatorTotpCredentialEntity, OperatorMfaChallengeEntity, OperatorRefreshTokenEntity];

/**
 * OperatorService. Its tokens are signed from the shared `signing_keys`
 * table (its own store instance reads the same active key), and disabling
 * an operator updates the runtime's revocation set, which identity's
 * verifier consults.
 */
export function operatorsRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const { deps } = ctx;
  const impl = new OperatorServiceImpl({
    db: deps.db,
    events: deps.events,
    keys: new SigningKeyStore(deps.db, ctx.sealer),
    hasher: new PasswordHasher(),
    throttle: new SignInThrottle(deps.db),
    sealer: ctx.sealer,
    revoked: deps.revokedSessions,
    afterCommit: () => deps.relay.nudge(),
    logger: deps.logger.child({ part: "operators" }),
  });
  return [{ service: OperatorService, file: file_bulwark_identity_v1_operator_service, impl: impl as never }];
}
