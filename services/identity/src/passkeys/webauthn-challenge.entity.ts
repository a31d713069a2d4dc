import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A WebAuthn ceremony's challenge (its SHA-256), single use and valid
 * 5 minutes: a registration's belongs to the registering user, a
 * sign-in's only to the tenant its slug named.
 */
export const WebAuthnChallengeEntity = defineEntity({
  name: "WebAuthnChallenge",
  tableName: "webauthn_challenges",
  properties: (p) => ({
    hash: p.string().primary(),
    tenantId: p.string(),
    userId: p.string().nullable(),
    kind: p.string(),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
  }),
});

/** A loaded challenge row. */
export type WebAuthnChallengeRow = InferEntity<typeof WebAuthnChallengeEntity>;
