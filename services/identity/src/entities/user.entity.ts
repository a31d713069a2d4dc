import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A user of one tenant. The email is stored lower-cased and is unique per
 * tenant; `passwordHash` is an argon2id PHC string (null until the user has
 * accepted an invitation).
 */
export const UserEntity = defineEntity({
  name: "User",
  tableName: "users",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    email: p.string(),
    displayName: p.string(),
    state: p.string(),
    passwordHash: p.string().nullable(),
    mfaEnrolled: p.boolean().default(false),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    lastSignInAt: p.datetime().nullable(),
    lastActivityAt: p.datetime().nullable(),
    version: p.integer().version(),
  }),
});

/** A loaded user row. */
export type User = InferEntity<typeof UserEntity>;
