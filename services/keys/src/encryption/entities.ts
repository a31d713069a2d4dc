import { defineEntity } from "@mikro-orm/core";

/**
 * A key ring: one per tenant, per data subject of a tenant, or per Bulwark
 * service (`tenantId` null). Read and written with SQL in rings.ts; the
 * entity documents the table.
 */
export const KeyRingEntity = defineEntity({
  name: "KeyRing",
  tableName: "key_rings",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string().nullable(),
    kind: p.string(),
    subjectId: p.string().nullable(),
    scope: p.string().unique(),
    currentVersion: p.integer(),
    minDecryptVersion: p.integer(),
    state: p.string(),
    destroyReason: p.text(),
    createdAt: p.datetime(),
    rotatedAt: p.datetime(),
    destroyedAt: p.datetime().nullable(),
  }),
});

/** One version of a ring's data key, stored only wrapped by a master key (null once destroyed). */
export const KeyVersionEntity = defineEntity({
  name: "KeyVersion",
  tableName: "key_versions",
  properties: (p) => ({
    ringId: p.string().primary(),
    version: p.integer().primary(),
    tenantId: p.string().nullable(),
    wrappedKey: p.blob().nullable(),
    masterKeyId: p.string().nullable(),
    createdAt: p.datetime(),
    destroyedAt: p.datetime().nullable(),
  }),
});
