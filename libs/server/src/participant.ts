import type { DescFile } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  DataSubjectParticipant,
  ErasureOutcome,
  file_bulwark_compliance_v1_data_subject_participant,
  RectificationOutcome,
  type CategoryErasure,
  type DataSubject,
  type FieldCorrection,
  type FieldRectification,
  type LegalHold,
} from "@bulwark/contracts";
import { currentContext, invalidArgument, permissionDenied, runInTenant } from "@bulwark/core";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceRegistration } from "./server.js";

/** The one service allowed to call DataSubjectParticipant. */
export const participantCaller = "compliance";

/**
 * Refuses every caller of a DataSubjectParticipant RPC but the compliance
 * service acting as itself in the platform scope (its own signed service
 * assertion): not a tenant's principal, not an operator, not another
 * service, whatever permissions they hold.
 */
export function requireComplianceCaller(): void {
  const p = currentContext()?.principal;
  if (p === undefined || p.kind !== "service" || p.id !== `svc_${participantCaller}` || p.tenantId !== undefined || p.viaService !== undefined) {
    throw permissionDenied("only the compliance service may call DataSubjectParticipant");
  }
}

/** The subject of a participant call, checked; `fn` runs inside its tenant. */
export function inSubjectTenant<T>(subject: DataSubject | undefined, fn: (s: DataSubject) => Promise<T>): Promise<T> {
  requireComplianceCaller();
  if (subject === undefined || subject.tenantId === "") throw invalidArgument("subject.tenant_id", "is required");
  if (subject.subjectId === "") throw invalidArgument("subject.subject_id", "is required");
  return runInTenant(subject.tenantId, () => fn(subject));
}

/** A tenant-wide participant call, checked; `fn` runs inside the tenant. */
export function inErasedTenant<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
  requireComplianceCaller();
  if (tenantId === "") throw invalidArgument("tenant_id", "is required");
  return runInTenant(tenantId, fn);
}

/** The legal hold covering `category` now, if any. */
export function holdOn(holds: readonly LegalHold[], category: string, now = new Date()): LegalHold | undefined {
  return holds.find((h) => h.category === category && (h.untilTime === undefined || timestampDate(h.untilTime) > now));
}

/** The entry of a category kept by a hold. */
export function retained(category: string, hold: LegalHold, recordCount: number): CategoryErasure {
  const until = hold.untilTime === undefined ? "further notice" : timestampDate(hold.untilTime).toISOString().slice(0, 10);
  return { $typeName: "bulwark.compliance.v1.CategoryErasure", category, outcome: ErasureOutcome.RETAINED_LEGAL_HOLD, recordCount: BigInt(recordCount), note: `held until ${until}${hold.reason === "" ? "" : `: ${hold.reason}`}` };
}

/** The entry of an erased category (or one the service held nothing of). */
export function erased(category: string, recordCount: number, note = ""): CategoryErasure {
  return { $typeName: "bulwark.compliance.v1.CategoryErasure", category, outcome: recordCount > 0 ? ErasureOutcome.ERASED : ErasureOutcome.NOTHING_HELD, recordCount: BigInt(recordCount), note };
}

/** The result of one corrected field. */
export function rectified(field: string, outcome: RectificationOutcome, note = ""): FieldRectification {
  return { $typeName: "bulwark.compliance.v1.FieldRectification", field, outcome, note };
}

/**
 * The corrections of a RectifySubjectData call, checked: each field named
 * once (INVALID_ARGUMENT naming the repeated one), so a result per field
 * is unambiguous.
 */
export function checkedCorrections(corrections: readonly FieldCorrection[]): readonly FieldCorrection[] {
  const seen = new Set<string>();
  for (const [i, c] of corrections.entries()) {
    if (seen.has(c.field)) throw invalidArgument(`corrections[${i}].field`, "names a field already corrected in this request");
    seen.add(c.field);
  }
  return corrections;
}

/** The answer of a service that holds none of the fields corrected: each NOT_APPLICABLE, with the note. */
export function nothingToRectify(service: string, corrections: readonly FieldCorrection[], note: string) {
  return { service, fields: checkedCorrections(corrections).map((c) => rectified(c.field, RectificationOutcome.NOT_APPLICABLE, note)) };
}

/**
 * The registration of a service's DataSubjectParticipant, typed against the
 * descriptor. Each method should start with `inSubjectTenant` or
 * `inErasedTenant`, which refuse any caller but compliance.
 */
export function participantRegistration(impl: ServiceImpl<typeof DataSubjectParticipant>): ServiceRegistration {
  const file: DescFile = file_bulwark_compliance_v1_data_subject_participant;
  return { service: DataSubjectParticipant, file, impl: impl as unknown as ServiceRegistration["impl"] };
}

/** A JSON Schema (2020-12) of a participant's export document: one member per category, each an array of records. */
export function exportSchema(service: string, categories: Readonly<Record<string, Readonly<Record<string, string>>>>): string {
  const props: Record<string, unknown> = {};
  for (const [name, fields] of Object.entries(categories)) {
    const fp: Record<string, unknown> = {};
    for (const [f, type] of Object.entries(fields)) fp[f] = type.endsWith("?") ? { type: [type.slice(0, -1), "null"] } : type === "string[]" ? { type: "array", items: { type: "string" } } : { type };
    props[name] = { type: "array", items: { type: "object", properties: fp, additionalProperties: false } };
  }
  return JSON.stringify({ $schema: "https://json-schema.org/draft/2020-12/schema", $id: `https://bulwark.dev/schemas/export/${service}.json`, title: `${service}: data of one subject`, type: "object", properties: props, additionalProperties: false });
}
