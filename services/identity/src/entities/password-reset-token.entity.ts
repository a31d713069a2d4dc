import { defineEntity, type InferEntity } from "@mikro-orm/core";

/** A single-use password reset token (its SHA-256), valid 30 minutes. */
export const PasswordResetTokenEntity = defineEntity({
  name: "PasswordResetToken",
  tableName: "password_reset_tokens",
  properties: (p) => ({
    hash: p.string().primary(),
    tenantId: p.string(),
    userId: p.string(),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
  }),
});

/** A loaded reset-token row. */
export type PasswordResetTokenRow = InferEntity<typeof PasswordResetTokenEntity>;
