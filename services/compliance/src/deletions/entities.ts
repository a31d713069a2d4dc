import { defineEntity } from "@mikro-orm/core";

/** The deletion of a closed tenant (SQL in store.ts; the entity documents the table). */
export const TenantDeletionEntity = defineEntity({
  name: "TenantDeletion",
  tableName: "tenant_deletions",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    state: p.string(),
    closedAt: p.datetime(),
    purgeAt: p.datetime(),
    completedAt: p.datetime().nullable(),
    updatedAt: p.datetime(),
  }),
});

/** One service's step of a tenant deletion. */
export const TenantDeletionStepEntity = defineEntity({
  name: "TenantDeletionStep",
  tableName: "tenant_deletion_steps",
  properties: (p) => ({
    deletionId: p.string().primary(),
    service: p.string().primary(),
    position: p.integer(),
    state: p.string(),
    attempts: p.integer(),
    lastError: p.text(),
    nextAttemptAt: p.datetime(),
    doneAt: p.datetime().nullable(),
    result: p.json(),
  }),
});
