import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  DataSubjectSchema,
  EraseSubjectDataRequestSchema,
  EraseTenantDataRequestSchema,
  ExportSubjectDataRequestSchema,
  RectifySubjectDataRequestSchema,
  type DataSubjectParticipant,
  type EraseSubjectDataResponse,
  type EraseTenantDataResponse,
  type ExportSubjectDataResponse,
  type FieldCorrection,
  type RectifySubjectDataResponse,
  type LegalHold,
} from "@bulwark/contracts";
import { runAsPlatform, runAsService } from "@bulwark/core";
import type { ComplianceContext } from "../context.js";

/** One service's side of a saga, called the same way whether it is remote or compliance itself. */
export interface Participant {
  exportSubject(tenantId: string, subjectId: string, reason: string): Promise<ExportSubjectDataResponse>;
  eraseSubject(tenantId: string, subjectId: string, requestId: string, holds: readonly LegalHold[]): Promise<EraseSubjectDataResponse>;
  eraseTenant(tenantId: string, deletionId: string, holds: readonly LegalHold[]): Promise<EraseTenantDataResponse>;
  rectifySubject(tenantId: string, subjectId: string, requestId: string, corrections: readonly FieldCorrection[]): Promise<RectifySubjectDataResponse>;
}

/** Runs `fn` as compliance itself in the explicit platform scope: the only caller participants accept. */
export function asCompliance<T>(reason: string, fn: () => Promise<T>): Promise<T> {
  return runAsService("compliance", undefined, () => runAsPlatform(reason, fn));
}

const subjectOf = (tenantId: string, subjectId: string) => create(DataSubjectSchema, { tenantId, subjectId });

/**
 * The participant named `service`: a remote DataSubjectParticipant, or the
 * implementation compliance serves for its own data (called in process).
 */
export function participantOf(ctx: ComplianceContext, service: string, local: ServiceImpl<typeof DataSubjectParticipant>): Participant {
  const remote = ctx.participants.get(service);
  const timeoutMs = 30_000;
  if (remote !== undefined) {
    return {
      exportSubject: (tenantId, subjectId, reason) => asCompliance(reason, () => remote.exportSubjectData({ subject: subjectOf(tenantId, subjectId) }, { timeoutMs })),
      eraseSubject: (tenantId, subjectId, requestId, holds) => asCompliance(`data subject erasure ${requestId}`, () => remote.eraseSubjectData({ subject: subjectOf(tenantId, subjectId), requestId, legalHolds: [...holds] }, { timeoutMs })),
      eraseTenant: (tenantId, deletionId, holds) => asCompliance(`tenant deletion ${deletionId}`, () => remote.eraseTenantData({ tenantId, deletionId, legalHolds: [...holds] }, { timeoutMs })),
      rectifySubject: (tenantId, subjectId, requestId, corrections) =>
        asCompliance(`data subject rectification ${requestId}`, () => remote.rectifySubjectData({ subject: subjectOf(tenantId, subjectId), requestId, corrections: [...corrections] }, { timeoutMs })),
    };
  }
  const call = <T>(p: T | Promise<T>): Promise<T> => Promise.resolve(p);
  const handler = {} as never;
  return {
    exportSubject: (tenantId, subjectId, reason) => asCompliance(reason, () => call(local.exportSubjectData(create(ExportSubjectDataRequestSchema, { subject: subjectOf(tenantId, subjectId) }), handler)) as Promise<ExportSubjectDataResponse>),
    eraseSubject: (tenantId, subjectId, requestId, holds) =>
      asCompliance(`data subject erasure ${requestId}`, () => call(local.eraseSubjectData(create(EraseSubjectDataRequestSchema, { subject: subjectOf(tenantId, subjectId), requestId, legalHolds: [...holds] }), handler)) as Promise<EraseSubjectDataResponse>),
    eraseTenant: (tenantId, deletionId, holds) => asCompliance(`tenant deletion ${deletionId}`, () => call(local.eraseTenantData(create(EraseTenantDataRequestSchema, { tenantId, deletionId, legalHolds: [...holds] }), handler)) as Promise<EraseTenantDataResponse>),
    rectifySubject: (tenantId, subjectId, requestId, corrections) =>
      asCompliance(`data subject rectification ${requestId}`, () => call(local.rectifySubjectData(create(RectifySubjectDataRequestSchema, { subject: subjectOf(tenantId, subjectId), requestId, corrections: [...corrections] }), handler)) as Promise<RectifySubjectDataResponse>),
  };
}
