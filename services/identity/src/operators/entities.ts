import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A platform operator: an account outside every tenant that manages
 * tenants. Platform-level (`tenantId` always null), so only the explicit
 * platform scope sees these rows. `state` is ACTIVE or DISABLED; a disabled
 * operator keeps the row for the audit trail.
 */
export const OperatorEntity = defineEntity({
  name: "Operator",
  tableName: "operators",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string().nullable(),
    email: p.string(),
    displayName: p.string(),
    passwordHash: p.text(),
    state: p.string(),
    createdAt: p.datetime(),
    lastSignInAt: p.datetime().nullable(),
    mfaEnrolled: p.boolean().default(false),
  }),
});

/** A loaded operator row. */
export type OperatorRow = InferEntity<typeof OperatorEntity>;

/**
 * One operator sign-in. Its id is the `sid` of the operator's access token,
 * so revoking it (on DisableOperator, sign-out, a reused refresh token or
 * an MFA reset) stops the token mesh-wide. `mfaPending` marks a session
 * begun before the operator had a second factor (enrolment-only tokens).
 */
export const OperatorSessionEntity = defineEntity({
  name: "OperatorSession",
  tableName: "operator_sessions",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string().nullable(),
    operatorId: p.string(),
    ipAddress: p.string().default(""),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
    mfaPending: p.boolean().default(false),
  }),
});

/** A loaded operator-session row. */
export type OperatorSessionRow = InferEntity<typeof OperatorSessionEntity>;

/**
 * An operator's TOTP authenticator, as a user's (mfa/totp-credential.entity.ts):
 * the secret sealed by SecretBox, pending until `confirmedAt`, and the last
 * accepted time step, which only moves forward.
 */
export const OperatorTotpCredentialEntity = defineEntity({
  name: "OperatorTotpCredential",
  tableName: "operator_totp_credentials",
  properties: (p) => ({
    operatorId: p.string().primary(),
    tenantId: p.string().nullable(),
    secretCiphertext: p.blob(),
    confirmedAt: p.datetime().nullable(),
    lastUsedStep: p.bigint().default(0),
    createdAt: p.datetime(),
  }),
});

/** An operator's password sign-in waiting for its code (the SHA-256 of its token). */
export const OperatorMfaChallengeEntity = defineEntity({
  name: "OperatorMfaChallenge",
  tableName: "operator_mfa_challenges",
  properties: (p) => ({
    hash: p.string().primary(),
    tenantId: p.string().nullable(),
    operatorId: p.string(),
    ipAddress: p.string().default(""),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
    failedAttempts: p.integer().default(0),
  }),
});

/** A single-use refresh token (SHA-256) of an operator session. */
export const OperatorRefreshTokenEntity = defineEntity({
  name: "OperatorRefreshToken",
  tableName: "operator_refresh_tokens",
  properties: (p) => ({
    hash: p.string().primary(),
    tenantId: p.string().nullable(),
    sessionId: p.string(),
    createdAt: p.datetime(),
    usedAt: p.datetime().nullable(),
    expiresAt: p.datetime(),
  }),
});
