import { defineEntity } from "@mikro-orm/core";

/** A data-subject request (read and written with SQL in store.ts; the entity documents the table). */
export const DataSubjectRequestEntity = defineEntity({
  name: "DataSubjectRequest",
  tableName: "dsr_requests",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    type: p.string(),
    state: p.string(),
    subjectId: p.string(),
    requestedBy: p.string(),
    verifiedBy: p.string().nullable(),
    verifyMethod: p.text().nullable(),
    approvedBy: p.string().nullable(),
    details: p.text(),
    stateReason: p.text(),
    extensionMonths: p.integer(),
    extensionReason: p.text(),
    createdAt: p.datetime(),
    dueAt: p.datetime(),
    completedAt: p.datetime().nullable(),
    exportWrappedKey: p.blob().nullable(),
    exportBundle: p.blob().nullable(),
    exportSha256: p.string().nullable(),
    exportSize: p.bigint().nullable(),
    exportServices: p.array().nullable(),
    exportCreatedAt: p.datetime().nullable(),
    exportExpiresAt: p.datetime().nullable(),
    corrections: p.blob().nullable(),
    correctedFields: p.array(),
    sagaFinishedAt: p.datetime().nullable(),
  }),
});

/** One participant service's step of a request. */
export const DataSubjectStepEntity = defineEntity({
  name: "DataSubjectStep",
  tableName: "dsr_steps",
  properties: (p) => ({
    requestId: p.string().primary(),
    service: p.string().primary(),
    tenantId: p.string(),
    state: p.string(),
    attempts: p.integer(),
    lastError: p.text(),
    nextAttemptAt: p.datetime(),
    doneAt: p.datetime().nullable(),
    result: p.json(),
    document: p.blob().nullable(),
  }),
});

/** A legal hold: a category of a tenant's data kept from erasure until a time. */
export const LegalHoldEntity = defineEntity({
  name: "LegalHold",
  tableName: "legal_holds",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    category: p.string(),
    reason: p.text(),
    untilAt: p.datetime(),
    createdBy: p.string(),
    createdAt: p.datetime(),
  }),
});
