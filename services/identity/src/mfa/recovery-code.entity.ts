import { defineEntity, type InferEntity } from "@mikro-orm/core";

/** One single-use recovery code of a user, stored as its hash only. */
export const RecoveryCodeEntity = defineEntity({
  name: "RecoveryCode",
  tableName: "recovery_codes",
  properties: (p) => ({
    userId: p.string().primary(),
    codeHash: p.string().primary(),
    tenantId: p.string(),
    usedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
  }),
});

/** A loaded recovery code row. */
export type RecoveryCodeRow = InferEntity<typeof RecoveryCodeEntity>;
