import { MfaChallengeEntity } from "../entities/mfa-challenge.entity.js";
import { PasswordHistoryEntity } from "../entities/password-history.entity.js";
import { PasswordResetTokenEntity } from "../entities/password-reset-token.entity.js";
import { RefreshTokenEntity } from "../entities/refresh-token.entity.js";
import { SessionEntity } from "../entities/session.entity.js";
import { SignInThrottleEntity } from "../entities/sign-in-throttle.entity.js";
import { SigningKeyEntity } from "../entities/signing-key.entity.js";

/** The entities of sign-in, sessions and tokens (one spread in module.ts). */
export const authEntities = [SessionEntity, RefreshTokenEntity, PasswordResetTokenEntity, MfaChallengeEntity, PasswordHistoryEntity, SignInThrottleEntity, SigningKeyEntity];
