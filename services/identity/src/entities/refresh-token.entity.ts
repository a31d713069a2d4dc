import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * One refresh token, stored as the SHA-256 of the token (never the token).
 * Each works once: `usedAt` is set by the refresh that consumed it, and a
 * used token presented again revokes its session.
 */
export const RefreshTokenEntity = defineEntity({
  name: "RefreshToken",
  tableName: "refresh_tokens",
  properties: (p) => ({
    hash: p.string().primary(),
    sessionId: p.string(),
    tenantId: p.string(),
    createdAt: p.datetime(),
    usedAt: p.datetime().nullable(),
    expiresAt: p.datetime(),
  }),
});

/** A loaded refresh-token row. */
export type RefreshTokenRow = InferEntity<typeof RefreshTokenEntity>;
