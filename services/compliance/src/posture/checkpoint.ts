import { create } from "@bufbuild/protobuf";
import { AuditCheckpointSchema, type AuditCheckpoint } from "@bulwark/contracts";
import { describeError, type Logger } from "@bulwark/core";
import type { RuntimeDeps } from "@bulwark/server";
import { asCompliance, evidenceClients } from "./mesh.js";

/**
 * Where a posture report gets the audit trail's signed tree head it was
 * taken at. The audit service's AuditLogService.GetCheckpoint is the real
 * source (`auditCheckpoints`); while audit is down, not deployed or has no
 * trail for the tenant yet, the report says "unavailable" rather than
 * failing.
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
export function noteCheckpoints(getNote: (tenantId: string) => Promise<string>, logger?: Logger): AuditCheckpointSource {
  return {
    async checkpoint(tenantId) {
      try {
        const parsed = parseCheckpointNote(await getNote(tenantId));
        if (parsed === undefined) logger?.warn({ tenantId }, "audit returned no well-formed checkpoint; the posture report says unavailable");
        return parsed ?? create(AuditCheckpointSchema, { available: false });
      } catch (err) {
        logger?.warn({ tenantId, err: describeError(err) }, "no audit checkpoint for the posture report; it says unavailable");
        return create(AuditCheckpointSchema, { available: false });
      }
    },
  };
}

/**
 * The audit service's checkpoints (AUDIT_URL): GetCheckpoint with refresh,
 * so the note covers every entry recorded up to the evaluation, called as
 * compliance's own service principal in the tenant (whoever asked for the
 * report; a tenant principal may read its own tenant's log only) and
 * bounded in time, so a hanging audit delays a report by at most
 * `timeoutMs`.
 */
export function auditCheckpoints(deps: RuntimeDeps, logger?: Logger, timeoutMs = 10_000): AuditCheckpointSource {
  const { auditLog } = evidenceClients(deps);
  return noteCheckpoints((tenantId) => asCompliance(tenantId, async () => (await auditLog.getCheckpoint({ tenantId, refresh: true }, { timeoutMs })).checkpoint), logger);
}
