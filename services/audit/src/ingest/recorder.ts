import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AuditEntry } from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import { leafOf } from "../tree/leaf.js";
import type { TreeStore } from "../tree/store.js";

/**
 * Appends entries to a tenant's trail inside the caller's transaction:
 * under the tenant's tree lock, the entry gets the next leaf index and its
 * recorded time, its leaf (the entry's deterministic encoding) is stored
 * with the filter columns in `entries`, and the tree's nodes are extended.
 * All of it commits with the consumer's inbox row, or none of it does.
 */
export class Recorder {
  readonly #tree: TreeStore;
  readonly #months = new Set<string>();

  constructor(tree: TreeStore) {
    this.#tree = tree;
  }

  /** Appends `entry` (without index and recorded time) and returns it as stored. */
  async append(em: EntityManager, entry: AuditEntry): Promise<AuditEntry> {
    const tenantId = entry.tenantId;
    await this.#tree.lock(em, tenantId);
    const index = await this.#tree.size(em, tenantId);
    const recordedAt = new Date();
    entry.leafIndex = BigInt(index);
    entry.recordedAt = timestampFromDate(recordedAt);
    if (entry.occurredAt === undefined) entry.occurredAt = entry.recordedAt;
    const leaf = leafOf(entry);
    const month = recordedAt.toISOString().slice(0, 7);
    if (!this.#months.has(month)) {
      await em.execute("select audit_ensure_partition(?)", [recordedAt]);
      this.#months.add(month);
    }
    await em.execute(
      `insert into entries (tenant_id, leaf_index, entry_id, event_id, recorded_at, occurred_at, actor_type, actor_id, action, resource_type, resource_id, outcome, leaf)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        tenantId,
        index,
        entry.entryId,
        entry.eventId,
        recordedAt,
        entry.occurredAt === undefined ? recordedAt : new Date(Number(entry.occurredAt.seconds) * 1000 + Math.floor(entry.occurredAt.nanos / 1e6)),
        entry.actor?.type ?? 0,
        entry.actor?.id ?? "",
        entry.action,
        entry.resource?.type ?? "",
        entry.resource?.id ?? "",
        entry.outcome,
        Buffer.from(leaf),
      ],
    );
    await this.#tree.append(em, tenantId, index, entry.entryId, leaf, recordedAt);
    return entry;
  }
}
