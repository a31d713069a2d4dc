import { defineEntity, type InferEntity } from "@mikro-orm/core";

/** That a user holds a role (a system role id such as `system:owner`, or `rol_…`). */
export const UserRoleEntity = defineEntity({
  name: "UserRole",
  tableName: "user_roles",
  properties: (p) => ({
    userId: p.string().primary(),
    roleId: p.string().primary(),
    tenantId: p.string(),
    createdAt: p.datetime(),
  }),
});

/** A loaded assignment row. */
export type UserRole = InferEntity<typeof UserRoleEntity>;
