import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AuditEntry } from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import { leafOf } from "../tree/leaf.js";
import { TreeStore } from "../tree/store.js";

/**
 * Appends entries to a tenant's trail inside the caller's transaction:
 * under the tenant's tree lock, the entry gets the next leaf index and its
 * recorded time, its leaf (the entry's deterministic encoding) is stored
 * with the filter columns in `entries`, and the tree's nodes are extended.
 * All of it commits with the consumer's inbox row, or none of it does.
 */
export class Recorder {
  readonly #tree: TreeStore;

  constructor(tree: TreeStore) {
    this.#tree = tree;
  }

  /** Appends `entry` (without index and recorded time) and returns it as stored. */
  async append(em: EntityManager, entry: AuditEntry): Promise<AuditEntry> {
    const [stored] = await this.appendMany(em, entry.tenantId, [entry]);
    return stored!;
  }

  /**
   * Appends entries of one tenant, in order, under one take of its tree
   * lock: consecutive leaf indexes from the current size, one multi-row
   * insert of the entries, and one of the leaves and of the tree nodes.
   * Scopes the rest of the transaction to the tenant. Three round trips:
   * the scope, the lock and the month's partition; the size and the tree's
   * border nodes (a statement of its own, after the lock, so that it sees
   * every append committed before); the entries, leaves and nodes.
   */
  async appendMany(em: EntityManager, tenantId: string, entries: readonly AuditEntry[]): Promise<AuditEntry[]> {
    if (entries.length === 0) return [];
    if (entries.some((e) => e.tenantId !== tenantId)) throw new Error("appendMany takes entries of one tenant");
    // 13 parameters an entry, 5 a leaf and 4 for each of about two nodes a leaf: chunks stay far below Postgres's 65535.
    if (entries.length > chunkEntries) {
      const out: AuditEntry[] = [];
      for (let i = 0; i < entries.length; i += chunkEntries) out.push(...(await this.appendMany(em, tenantId, entries.slice(i, i + chunkEntries))));
      return out;
    }
    const recordedAt = new Date();
    // The partition every time, not once per month per process: a partition created in a transaction that rolled back is gone.
    await em.execute(`select set_config('app.platform', '', true), set_config('app.tenant_id', ?, true), ${TreeStore.lockCall}, audit_ensure_partition(?)`, [tenantId, tenantId, recordedAt]);
    const state = await this.#tree.appendState(em, tenantId);
    const first = state.size;
    const leaves: { entryId: string; leaf: Uint8Array }[] = [];
    const params: unknown[] = [];
    entries.forEach((entry, i) => {
      entry.leafIndex = BigInt(first + i);
      entry.recordedAt = timestampFromDate(recordedAt);
      if (entry.occurredAt === undefined) entry.occurredAt = entry.recordedAt;
      const leaf = leafOf(entry);
      leaves.push({ entryId: entry.entryId, leaf });
      params.push(
        tenantId,
        first + i,
        entry.entryId,
        entry.eventId,
        recordedAt,
        new Date(Number(entry.occurredAt.seconds) * 1000 + Math.floor(entry.occurredAt.nanos / 1e6)),
        entry.actor?.type ?? 0,
        entry.actor?.id ?? "",
        entry.action,
        entry.resource?.type ?? "",
        entry.resource?.id ?? "",
        entry.outcome,
        Buffer.from(leaf),
      );
    });
    const rows = {
      sql: `insert into entries (tenant_id, leaf_index, entry_id, event_id, recorded_at, occurred_at, actor_type, actor_id, action, resource_type, resource_id, outcome, leaf)
       values ${entries.map(() => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
      params,
    };
    await this.#tree.appendMany(em, tenantId, first, leaves, recordedAt, { state, with: rows });
    return [...entries];
  }
}

/** Entries appended in one statement at most. */
const chunkEntries = 1_000;
