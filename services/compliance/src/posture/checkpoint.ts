import { create } from "@bufbuild/protobuf";
import { AuditCheckpointSchema, type AuditCheckpoint } from "@bulwark/contracts";

/**
 * Where a posture report gets the audit trail's signed tree head it was
 * taken at. The audit service's AuditLogService.GetCheckpoint is the real
 * source once audit is part of the mesh (`noteCheckpoints` over its
 * client); until then, or while it is down, the report says "unavailable"
 * rather than failing.
 */
export interface AuditCheckpointSource {
  checkpoint(tenantId: string): Promise<AuditCheckpoint>;
}

/** The source used while no audit service is wired in: always unavailable. */
export const unavailableCheckpoints: AuditCheckpointSource = {
  checkpoint: async () => create(AuditCheckpointSchema, { available: false }),
};

/**
 * Reads a C2SP signed note over a C2SP checkpoint body (origin line, tree
 * size line, base64 root hash line, optional extension lines, a blank line,
 * then signature lines); undefined if it is not one.
 */
export function parseCheckpointNote(note: string): AuditCheckpoint | undefined {
  const [body] = note.split("\n\n");
  const lines = (body ?? "").split("\n");
  if (lines.length < 3 || lines[0] === "" || !/^\d+$/.test(lines[1] ?? "") || !/^[A-Za-z0-9+/]+=*$/.test(lines[2] ?? "")) return undefined;
  return create(AuditCheckpointSchema, { available: true, treeSize: BigInt(lines[1]!), rootHash: lines[2]!, signedNote: note });
}

/**
 * A checkpoint source over a function that returns the tenant's signed note
 * (audit's `GetCheckpoint({ tenantId, refresh: true }).checkpoint`, called as
 * compliance): any failure or malformed note is "unavailable".
 */
export function noteCheckpoints(getNote: (tenantId: string) => Promise<string>): AuditCheckpointSource {
  return {
    async checkpoint(tenantId) {
      try {
        return parseCheckpointNote(await getNote(tenantId)) ?? create(AuditCheckpointSchema, { available: false });
      } catch {
        return create(AuditCheckpointSchema, { available: false });
      }
    },
  };
}
