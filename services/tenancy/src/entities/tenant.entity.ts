import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A tenant row. `tenantId` equals `id`: every table in the mesh is keyed on
 * tenant_id for row-level security, the tenants table included, so a tenant
 * principal can read its own tenant and no other.
 */
export const TenantEntity = defineEntity({
  name: "Tenant",
  tableName: "tenants",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    slug: p.string().unique(),
    displayName: p.string(),
    region: p.string(),
    plan: p.string(),
    state: p.string(),
    stateReason: p.string().default(""),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    closedAt: p.datetime().nullable(),
    purgeAt: p.datetime().nullable(),
    version: p.integer().version(),
  }),
});

/** A loaded tenant row. */
export type Tenant = InferEntity<typeof TenantEntity>;
