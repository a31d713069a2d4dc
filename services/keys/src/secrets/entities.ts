import { defineEntity } from "@mikro-orm/core";

/** A stored credential's metadata (its versions hold the ciphertext). Read and written with SQL in secret-service.ts. */
export const SecretEntity = defineEntity({
  name: "Secret",
  tableName: "secrets",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    name: p.string(),
    description: p.text(),
    currentVersion: p.integer(),
    rotationPeriodS: p.integer().nullable(),
    remindedVersion: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  }),
});

/** One version of a stored credential: ciphertext of the tenant's ring only. */
export const SecretVersionEntity = defineEntity({
  name: "SecretVersion",
  tableName: "secret_versions",
  properties: (p) => ({
    secretId: p.string().primary(),
    version: p.integer().primary(),
    tenantId: p.string(),
    ciphertext: p.blob(),
    sizeBytes: p.integer(),
    createdBy: p.string(),
    createdAt: p.datetime(),
  }),
});
