import { create } from "@bufbuild/protobuf";
import { AuditCheckpointSchema, type AuditCheckpoint } from "@bulwark/contracts";

/**
 * Where a posture report gets the audit trail's signed tree head it was
 * taken at. The audit service's AuditLogService.GetCheckpoint is the real
 * source once audit is part of the mesh; until then (or while it is down)
 * the report says "unavailable" rather than failing.
 */
export interface AuditCheckpointSource {
  checkpoint(tenantId: string): Promise<AuditCheckpoint>;
}

/** The source used while no audit service is wired in: always unavailable. */
export const unavailableCheckpoints: AuditCheckpointSource = {
  checkpoint: async () => create(AuditCheckpointSchema, { available: false }),
};
