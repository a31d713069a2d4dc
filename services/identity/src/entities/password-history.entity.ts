import { defineEntity, type InferEntity } from "@mikro-orm/core";

/** A password a user had (its argon2id hash), so the last five are not reused. */
export const PasswordHistoryEntity = defineEntity({
  name: "PasswordHistory",
  tableName: "password_history",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    userId: p.string(),
    passwordHash: p.string(),
    createdAt: p.datetime(),
  }),
});

/** A loaded history row. */
export type PasswordHistoryRow = InferEntity<typeof PasswordHistoryEntity>;
