import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A tenant's custom role (`rol_…`): a named set of catalogue permissions.
 * The name is unique per tenant, case-insensitively. System roles are not
 * stored; they come from `systemRoles` in @bulwark/core.
 */
export const RoleEntity = defineEntity({
  name: "Role",
  tableName: "roles",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    name: p.string(),
    description: p.string().default(""),
    permissions: p.array(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  }),
});

/** A loaded custom role row. */
export type RoleRow = InferEntity<typeof RoleEntity>;
