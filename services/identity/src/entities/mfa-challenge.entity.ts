import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A half-finished sign-in waiting for a second factor (its token's SHA-256),
 * valid 5 minutes. The device, user agent and address of the sign-in travel
 * with it so the session it becomes describes the right device.
 */
export const MfaChallengeEntity = defineEntity({
  name: "MfaChallenge",
  tableName: "mfa_challenges",
  properties: (p) => ({
    hash: p.string().primary(),
    tenantId: p.string(),
    userId: p.string(),
    device: p.string().default(""),
    userAgent: p.string().default(""),
    ipAddress: p.string().default(""),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
    failedAttempts: p.integer().default(0),
    /** The password counter of the sign-in that opened it, cleared when the second factor passes. */
    accountKey: p.string().default(""),
  }),
});

/** A loaded challenge row. */
export type MfaChallengeRow = InferEntity<typeof MfaChallengeEntity>;
