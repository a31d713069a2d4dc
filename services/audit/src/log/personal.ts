import type { AuditEntry, SealedValue } from "@bulwark/contracts";
import type { Privacy } from "../privacy/privacy.js";

/** The sealed personal values of an entry, by the path GetEntry {decrypt} names them with. */
export function sealedValuesOf(entry: AuditEntry): [string, SealedValue | undefined][] {
  return [
    ["actor.email", entry.actor?.email],
    ["source_ip", entry.sourceIp],
    ["user_agent", entry.userAgent],
    ...entry.changedFields.flatMap((f): [string, SealedValue | undefined][] => [
      [`changed_fields.${f.name}.old`, f.oldValue?.kind.case === "sealed" ? f.oldValue.kind.value : undefined],
      [`changed_fields.${f.name}.new`, f.newValue?.kind.case === "sealed" ? f.newValue.kind.value : undefined],
    ]),
  ];
}

/**
 * An entry's personal values decrypted through keys, by path; a value whose
 * subject key was destroyed (an erased person) is left out. Each value is
 * sealed under the person it is about (the caller's under the caller, the
 * target's under the target), so `onlySubject` keeps one person's values
 * only (a data subject's export). UNAVAILABLE when keys cannot be reached.
 */
export async function openPersonal(privacy: Privacy, tenantId: string, entry: AuditEntry, onlySubject?: string): Promise<Record<string, string>> {
  const personal: Record<string, string> = {};
  for (const [path, value] of sealedValuesOf(entry)) {
    if (value === undefined || (onlySubject !== undefined && value.subjectId !== onlySubject)) continue;
    const plain = await privacy.open(tenantId, value);
    if (plain !== undefined) personal[path] = plain;
  }
  return personal;
}
