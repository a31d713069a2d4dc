import type { EntityManager } from "@bulwark/db";
import { completedBy, consistencyRanges, inclusionRanges, leafHash, nodeHash, nodesOf, rangeHash, type NodeId, type Range } from "./hashes.js";

/** Raised when a size or index lies beyond the tree (mapped to OUT_OF_RANGE). */
export class TreeRangeError extends Error {
  override name = "TreeRangeError";
}

/**
 * A tenant's Merkle tree in Postgres: leaves in `leaves`, every complete
 * subtree's hash in `tree_nodes`. Appends take a transaction-level advisory
 * lock on the tenant (`pg_advisory_xact_lock`), so replicas append one at a
 * time per tenant and the index and the nodes written always agree; reads
 * need no lock (rows are never changed once written). Every call runs in
 * a transaction already scoped to the tenant.
 */
export class TreeStore {
  /** Takes the tenant's writer lock until the transaction ends. */
  async lock(em: EntityManager, tenantId: string): Promise<void> {
    await em.execute("select pg_advisory_xact_lock(hashtext('bulwark.audit.tree'), hashtext(?))", [tenantId]);
  }

  /** The tenant's current size (call under the lock to append). */
  async size(em: EntityManager, tenantId: string): Promise<number> {
    const [row] = await em.execute<{ n: string | null }[]>("select max(leaf_index) as n from leaves where tenant_id = ?", [tenantId]);
    return row?.n === null || row?.n === undefined ? 0 : Number(row.n) + 1;
  }

  /** Appends one leaf at `index` (= size, under the lock) and stores every subtree it completes. */
  async append(em: EntityManager, tenantId: string, index: number, entryId: string, leaf: Uint8Array, recordedAt: Date): Promise<void> {
    const hash = leafHash(leaf);
    await em.execute("insert into leaves (tenant_id, leaf_index, entry_id, leaf_hash, recorded_at) values (?, ?, ?, ?, ?)", [tenantId, index, entryId, hash, recordedAt]);
    const ids = completedBy(index);
    const siblings = await this.nodes(em, tenantId, ids.slice(0, -1).map(([l, i]) => [l, i - 1] as const));
    const rows: [number, number, Buffer][] = [[0, index, hash]];
    let current = hash;
    for (let j = 1; j < ids.length; j++) {
      const [l, i] = ids[j - 1]!;
      const left = siblings.get(key([l, i - 1]));
      if (left === undefined) throw new Error(`tree node ${l}/${i - 1} of a tenant is missing`);
      current = nodeHash(left, current);
      rows.push([ids[j]![0], ids[j]![1], current]);
    }
    const values = rows.map(() => "(?, ?, ?, ?)").join(", ");
    await em.execute(`insert into tree_nodes (tenant_id, level, idx, hash) values ${values}`, rows.flatMap(([l, i, h]) => [tenantId, l, i, h]));
  }

  /** The root of the tree of `size` leaves. */
  async root(em: EntityManager, tenantId: string, size: number): Promise<Uint8Array> {
    return (await this.hashes(em, tenantId, [{ start: 0, end: size }]))[0]!;
  }

  /** RFC 6962 inclusion path of leaf `index` in the tree of `size` leaves. */
  async inclusionProof(em: EntityManager, tenantId: string, index: number, size: number): Promise<Uint8Array[]> {
    if (index >= size) throw new TreeRangeError("the leaf is not in a tree of that size");
    return this.hashes(em, tenantId, inclusionRanges(index, size));
  }

  /** RFC 6962 consistency proof between sizes `first` and `second`. */
  async consistencyProof(em: EntityManager, tenantId: string, first: number, second: number): Promise<Uint8Array[]> {
    return this.hashes(em, tenantId, consistencyRanges(first, second));
  }

  /** The hashes of several ranges, from one read of the nodes they need. */
  async hashes(em: EntityManager, tenantId: string, ranges: readonly Range[]): Promise<Uint8Array[]> {
    const ids = ranges.flatMap((r) => nodesOf(r));
    const nodes = await this.nodes(em, tenantId, ids);
    return ranges.map((r) =>
      rangeHash(r, (id) => {
        const h = nodes.get(key(id));
        if (h === undefined) throw new TreeRangeError("the tree is smaller than that");
        return h;
      }),
    );
  }

  private async nodes(em: EntityManager, tenantId: string, ids: readonly NodeId[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (ids.length === 0) return out;
    const levels = ids.map(([l]) => l);
    const idxs = ids.map(([, i]) => i);
    const rows = await em.execute<{ level: number; idx: string; hash: Buffer }[]>(
      "select n.level, n.idx, n.hash from tree_nodes n join unnest(?::smallint[], ?::bigint[]) as w(level, idx) on n.level = w.level and n.idx = w.idx where n.tenant_id = ?",
      [`{${levels.join(",")}}`, `{${idxs.join(",")}}`, tenantId],
    );
    for (const r of rows) out.set(key([r.level, Number(r.idx)]), r.hash);
    return out;
  }
}

function key([l, i]: NodeId): string {
  return `${l}/${i}`;
}
