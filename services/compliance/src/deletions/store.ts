import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TenantDeletionChangedSchema, TenantDeletionSchema, TenantDeletionState, type TenantDeletion } from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { stepToProto, type StepRow } from "../requests/store.js";

/** A row of tenant_deletions. */
export interface DeletionRow {
  id: string;
  tenant_id: string;
  state: string;
  closed_at: Date;
  purge_at: Date;
  completed_at: Date | null;
  updated_at: Date;
}

const stateOf: Readonly<Record<string, TenantDeletionState>> = {
  scheduled: TenantDeletionState.SCHEDULED,
  in_progress: TenantDeletionState.IN_PROGRESS,
  completed: TenantDeletionState.COMPLETED,
  cancelled: TenantDeletionState.CANCELLED,
};

/**
 * The order a tenant's deletion runs its services in: compliance's own
 * records first, then every participant, keys last — it destroys the
 * tenant's key rings, after which nothing encrypted under them opens (the
 * other services must not need them any more).
 */
export function deletionOrder(participants: readonly string[]): string[] {
  return ["compliance", ...participants.filter((p) => p !== "keys" && p !== "compliance"), ...(participants.includes("keys") ? ["keys"] : [])];
}

/** A deletion as the proto shows it. */
export function deletionToProto(d: DeletionRow, steps: readonly StepRow[] = []): TenantDeletion {
  const ts = (x: Date | null) => (x === null ? undefined : timestampFromDate(new Date(x)));
  return create(TenantDeletionSchema, {
    id: d.id,
    tenantId: d.tenant_id,
    state: stateOf[d.state] ?? TenantDeletionState.UNSPECIFIED,
    closeTime: ts(d.closed_at),
    purgeTime: ts(d.purge_at),
    completeTime: ts(d.completed_at),
    steps: steps.map(stepToProto),
  });
}

/** Publishes bulwark.compliance.tenant_deletion.<verb>. */
export async function publishDeletion(em: EntityManager, events: EventPublisher, verb: string, d: DeletionRow): Promise<void> {
  await events.publish(em, { aggregate: "tenant_deletion", verb, aggregateId: d.id, schema: TenantDeletionChangedSchema, payload: create(TenantDeletionChangedSchema, { deletion: deletionToProto(d) }) });
}
