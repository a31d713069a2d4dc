import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CategoryErasureSchema,
  FieldRectificationSchema,
  RectificationOutcome,
  DataSubjectRequestChangedSchema,
  DataSubjectRequestSchema,
  ErasureOutcome,
  ParticipantStepSchema,
  RequestState,
  RequestType,
  StepState,
  type CategoryErasure,
  type DataSubjectRequest,
  type ParticipantStep,
} from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";

/** The stored names of request types and states. */
export const typeNames = { [RequestType.EXPORT]: "export", [RequestType.ERASURE]: "erasure", [RequestType.RECTIFICATION]: "rectification" } as Readonly<Record<number, string>>;
const typeOf: Readonly<Record<string, RequestType>> = { export: RequestType.EXPORT, erasure: RequestType.ERASURE, rectification: RequestType.RECTIFICATION };
const stateOf: Readonly<Record<string, RequestState>> = {
  received: RequestState.RECEIVED,
  identity_verified: RequestState.IDENTITY_VERIFIED,
  in_progress: RequestState.IN_PROGRESS,
  completed: RequestState.COMPLETED,
  rejected: RequestState.REJECTED,
  failed: RequestState.FAILED,
};
const stepStateOf: Readonly<Record<string, StepState>> = { pending: StepState.PENDING, retrying: StepState.RETRYING, done: StepState.DONE, failed: StepState.FAILED };

/** A row of dsr_requests (without the bundle). */
export interface RequestRow {
  id: string;
  tenant_id: string;
  type: string;
  state: string;
  subject_id: string;
  requested_by: string;
  verified_by: string | null;
  approved_by: string | null;
  details: string;
  state_reason: string;
  extension_months: number;
  extension_reason: string;
  created_at: Date;
  due_at: Date;
  completed_at: Date | null;
  export_expires_at: Date | null;
  corrected_fields: string[];
}

/** A row of dsr_steps or tenant_deletion_steps (without the document). */
export interface StepRow {
  service: string;
  state: string;
  attempts: number;
  last_error: string;
  next_attempt_at: Date;
  done_at: Date | null;
  result: { erasures?: { category: string; outcome: number; recordCount: string; note: string }[]; recordCount?: string; rectifications?: { field: string; outcome: number; note: string }[] };
}

/** The columns of a request row as RequestRow reads them. */
export const requestColumns = "id, tenant_id, type, state, subject_id, requested_by, verified_by, approved_by, details, state_reason, extension_months, extension_reason, created_at, due_at, completed_at, export_expires_at, corrected_fields";
/** The columns of a step row as StepRow reads them. */
export const stepColumns = "service, state, attempts, last_error, next_attempt_at, done_at, result";

/** A step row as the proto shows it. */
export function stepToProto(s: StepRow): ParticipantStep {
  return create(ParticipantStepSchema, {
    service: s.service,
    state: stepStateOf[s.state] ?? StepState.UNSPECIFIED,
    attempts: s.attempts,
    lastError: s.last_error,
    nextAttemptTime: s.state === "retrying" ? timestampFromDate(new Date(s.next_attempt_at)) : undefined,
    doneTime: s.done_at === null ? undefined : timestampFromDate(new Date(s.done_at)),
    erasures: (s.result.erasures ?? []).map((e) => create(CategoryErasureSchema, { category: e.category, outcome: e.outcome as ErasureOutcome, recordCount: BigInt(e.recordCount), note: e.note })),
    recordCount: BigInt(s.result.recordCount ?? "0"),
    rectifications: (s.result.rectifications ?? []).map((f) => create(FieldRectificationSchema, { field: f.field, outcome: f.outcome as RectificationOutcome, note: f.note })),
  });
}

/** Erasure results as stored in a step's `result`. */
export function erasuresToJson(list: readonly CategoryErasure[]): StepRow["result"]["erasures"] {
  return list.map((e) => ({ category: e.category, outcome: e.outcome, recordCount: e.recordCount.toString(), note: e.note }));
}

/** A request row (and its steps) as the proto shows it. */
export function requestToProto(r: RequestRow, steps: readonly StepRow[] = []): DataSubjectRequest {
  const ts = (d: Date | null) => (d === null ? undefined : timestampFromDate(new Date(d)));
  return create(DataSubjectRequestSchema, {
    id: r.id,
    tenantId: r.tenant_id,
    type: typeOf[r.type] ?? RequestType.UNSPECIFIED,
    state: stateOf[r.state] ?? RequestState.UNSPECIFIED,
    subjectId: r.subject_id,
    requestedBy: r.requested_by,
    verifiedBy: r.verified_by ?? "",
    approvedBy: r.approved_by ?? "",
    createTime: ts(r.created_at),
    dueTime: ts(r.due_at),
    extensionMonths: r.extension_months,
    extensionReason: r.extension_reason,
    stateReason: r.state_reason,
    completeTime: ts(r.completed_at),
    steps: steps.map(stepToProto),
    details: r.details,
    exportExpireTime: ts(r.export_expires_at),
    correctedFields: r.corrected_fields ?? [],
  });
}

/** Loads a request (locked for update when `lock`). */
export async function loadRequest(em: EntityManager, id: string, lock = false): Promise<RequestRow | undefined> {
  return (await em.execute<RequestRow[]>(`select ${requestColumns} from dsr_requests where id = ?${lock ? " for update" : ""}`, [id]))[0];
}

/** The steps of a request, in service order. */
export async function loadSteps(em: EntityManager, id: string): Promise<StepRow[]> {
  return em.execute<StepRow[]>(`select ${stepColumns} from dsr_steps where request_id = ? order by service`, [id]);
}

/** Publishes bulwark.compliance.request.<verb> for a request after a change. */
export async function publishChange(em: EntityManager, events: EventPublisher, verb: string, row: RequestRow, previous: string): Promise<void> {
  await events.publish(em, {
    aggregate: "request",
    verb,
    aggregateId: row.id,
    schema: DataSubjectRequestChangedSchema,
    payload: create(DataSubjectRequestChangedSchema, { request: requestToProto(row), previousState: stateOf[previous] ?? RequestState.UNSPECIFIED }),
  });
}

/** Adds calendar months (UTC), clamping to the month's last day (31 Jan + 1 month = 28/29 Feb). */
export function addMonths(d: Date, months: number): Date {
  const out = new Date(d.getTime());
  const day = out.getUTCDate();
  out.setUTCDate(1);
  out.setUTCMonth(out.getUTCMonth() + months);
  const last = new Date(Date.UTC(out.getUTCFullYear(), out.getUTCMonth() + 1, 0)).getUTCDate();
  out.setUTCDate(Math.min(day, last));
  return out;
}
