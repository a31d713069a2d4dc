import { defineEntity } from "@mikro-orm/core";

/** A webhook signing secret's metadata (its versions hold the ciphertext). Read and written with SQL in webhook-service.ts. */
export const WebhookSecretEntity = defineEntity({
  name: "WebhookSecret",
  tableName: "webhook_secrets",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    name: p.string(),
    currentVersion: p.integer(),
    previousValidUntil: p.datetime().nullable(),
    createdAt: p.datetime(),
    rotatedAt: p.datetime(),
  }),
});

/** One version of a signing secret: ciphertext of the tenant's ring only. */
export const WebhookSecretVersionEntity = defineEntity({
  name: "WebhookSecretVersion",
  tableName: "webhook_secret_versions",
  properties: (p) => ({
    webhookSecretId: p.string().primary(),
    version: p.integer().primary(),
    tenantId: p.string(),
    ciphertext: p.blob(),
    createdAt: p.datetime(),
  }),
});
