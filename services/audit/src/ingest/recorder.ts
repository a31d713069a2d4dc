import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { arrayLiteral, packedBytes, type Statements } from "@bulwark/db";
import type { AuditEntry } from "@bulwark/contracts";
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
  async append(em: Statements, entry: AuditEntry): Promise<AuditEntry> {
    const [stored] = await this.appendMany(em, entry.tenantId, [entry]);
    return stored!;
  }

  /**
   * Appends entries of one tenant, in order, under one take of its tree
   * lock: consecutive leaf indexes from the current size, and one
   * statement inserting the entries, the leaves and the tree nodes.
   * Scopes the rest of the transaction to the tenant. Three round trips:
   * the scope, the lock and the month's partition; the size and the tree's
   * border nodes (a statement of its own, after the lock, so that it sees
   * every append committed before); the entries, leaves and nodes.
   */
  async appendMany(em: Statements, tenantId: string, entries: readonly AuditEntry[]): Promise<AuditEntry[]> {
    if (entries.length === 0) return [];
    if (entries.some((e) => e.tenantId !== tenantId)) throw new Error("appendMany takes entries of one tenant");
    // Arrays of a bounded length: a statement's size and its transaction's locks stay bounded.
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
    const cols = { entryId: [] as string[], eventId: [] as string[], occurredAt: [] as Date[], actorType: [] as number[], actorId: [] as string[], action: [] as string[], resourceType: [] as string[], resourceId: [] as string[], outcome: [] as number[], leaf: [] as Uint8Array[] };
    for (const [i, entry] of entries.entries()) {
      entry.leafIndex = BigInt(first + i);
      entry.recordedAt = timestampFromDate(recordedAt);
      if (entry.occurredAt === undefined) entry.occurredAt = entry.recordedAt;
      const leaf = leafOf(entry);
      leaves.push({ entryId: entry.entryId, leaf });
      cols.entryId.push(entry.entryId);
      cols.eventId.push(entry.eventId);
      cols.occurredAt.push(new Date(Number(entry.occurredAt.seconds) * 1000 + Math.floor(entry.occurredAt.nanos / 1e6)));
      cols.actorType.push(entry.actor?.type ?? 0);
      cols.actorId.push(entry.actor?.id ?? "");
      cols.action.push(entry.action);
      cols.resourceType.push(entry.resource?.type ?? "");
      cols.resourceId.push(entry.resource?.id ?? "");
      cols.outcome.push(entry.outcome);
      cols.leaf.push(leaf);
    }
    // The leaves' bytes as they are, in one parameter.
    const packed = packedBytes(cols.leaf);
    const rows = {
      sql: `insert into entries (tenant_id, leaf_index, entry_id, event_id, recorded_at, occurred_at, actor_type, actor_id, action, resource_type, resource_id, outcome, leaf)
       select ?, ?::bigint + t.n - 1, t.entry_id, t.event_id, ?, t.occurred_at, t.actor_type, t.actor_id, t.action, t.resource_type, t.resource_id, t.outcome, substring(?::bytea from t.leaf_at for t.leaf_length)
       from unnest(?::text[], ?::text[], ?::timestamptz[], ?::smallint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::smallint[], ?::int[], ?::int[])
         with ordinality as t(entry_id, event_id, occurred_at, actor_type, actor_id, action, resource_type, resource_id, outcome, leaf_at, leaf_length, n)`,
      params: [
        tenantId,
        first,
        recordedAt,
        packed.bytes,
        ...[cols.entryId, cols.eventId, cols.occurredAt, cols.actorType, cols.actorId, cols.action, cols.resourceType, cols.resourceId, cols.outcome].map((c) => arrayLiteral(c)),
        packed.offsets,
        packed.lengths,
      ],
    };
    await this.#tree.appendMany(em, tenantId, first, leaves, recordedAt, { state, with: rows });
    return [...entries];
  }
}

/** Entries appended in one statement at most. */
const chunkEntries = 1_000;
