import { appendLeaves, consistencyProof, inclusionProof, leafHash, MissingNodeError, rootAt, type NodeHashReader, type NodeId } from "@bulwark/tlog";

/** What an append reads under the lock: the size and the border nodes (the compact range of [0, size)) the new nodes hash with. */
export interface AppendState {
  readonly size: number;
  /** Border node hashes by `level/index`. */
  readonly border: ReadonlyMap<string, Uint8Array>;
}

/** A statement to run together with the tree's inserts (as a data-modifying CTE of the same statement): keep its text fixed. */
export interface CoInsert {
  readonly sql: string;
  readonly params: readonly unknown[];
}
import { arrayLiteral, packedBytes, type Statements } from "@bulwark/db";

/** Raised when a size or index lies beyond the tree (mapped to OUT_OF_RANGE). */
export class TreeRangeError extends Error {
  override name = "TreeRangeError";
}

/**
 * A tenant's Merkle tree in Postgres, over libs/tlog: leaves in `leaves`,
 * every complete subtree's hash in `tree_nodes` (libs/tlog's node-hash
 * store), so a root or proof at any size is one batch read. Appends take a
 * transaction-level advisory lock on the tenant (`pg_advisory_xact_lock`),
 * so replicas append one at a time per tenant and the index and the nodes
 * written always agree; reads need no lock (rows never change once
 * written). Every call runs in a transaction already scoped to the tenant.
 */
export class TreeStore {
  /** Takes the tenant's writer lock until the transaction ends. */
  async lock(em: Statements, tenantId: string): Promise<void> {
    await em.execute(`select ${TreeStore.lockCall}`, [tenantId]);
  }

  /** The lock as an SQL call, its one parameter the tenant, for a statement that does more in the same round trip. */
  static readonly lockCall = "pg_advisory_xact_lock(hashtext('bulwark.audit.tree'), hashtext(?))";

  /** The tenant's current size (call under the lock to append). */
  async size(em: Statements, tenantId: string): Promise<number> {
    const [row] = await em.execute<{ n: string | null }[]>("select max(leaf_index) as n from leaves where tenant_id = ?", [tenantId]);
    return row?.n === null || row?.n === undefined ? 0 : Number(row.n) + 1;
  }

  /**
   * Under the lock: the tenant's size and the border nodes the next append
   * hashes with, in one round trip (a statement after the lock's, so its
   * snapshot sees every append committed before the lock was granted).
   */
  async appendState(em: Statements, tenantId: string): Promise<AppendState> {
    const rows = await em.execute<{ size: string; level: number | null; idx: string | null; hash: Buffer | null }[]>(
      `with s as (select coalesce(max(leaf_index) + 1, 0)::bigint as size from leaves where tenant_id = ?)
       select s.size, b.level, b.idx, b.hash from s left join lateral (
         select n.level, n.idx, n.hash from generate_series(0, 62) as l(level)
         join tree_nodes n on n.tenant_id = ? and n.level = l.level and n.idx = (s.size >> l.level) - 1
         where ((s.size >> l.level) & 1) = 1
       ) b on true`,
      [tenantId, tenantId],
    );
    const border = new Map<string, Uint8Array>();
    for (const r of rows) if (r.level !== null && r.idx !== null && r.hash !== null) border.set(`${r.level}/${r.idx}`, new Uint8Array(r.hash));
    return { size: Number(rows[0]?.size ?? 0), border };
  }

  /** Appends one leaf at `index` (= size, under the lock) and stores every subtree it completes. */
  async append(em: Statements, tenantId: string, index: number, entryId: string, leaf: Uint8Array, recordedAt: Date): Promise<void> {
    await this.appendMany(em, tenantId, index, [{ entryId, leaf }], recordedAt);
  }

  /**
   * Appends leaves at `first`, `first + 1`, … (`first` = size, under the
   * lock) and stores every subtree they complete: one statement, whatever
   * the number of leaves (columns as arrays through `unnest`, so its text
   * never changes and Postgres plans it once per connection), with the
   * caller's own insert as a data-modifying CTE of the same statement.
   */
  async appendMany(em: Statements, tenantId: string, first: number, leaves: readonly { entryId: string; leaf: Uint8Array }[], recordedAt: Date, opts: { state?: AppendState; with?: CoInsert } = {}): Promise<void> {
    if (leaves.length === 0) return;
    const hashes = leaves.map((l) => leafHash(l.leaf));
    if (opts.state !== undefined && opts.state.size !== first) throw new Error("the append state is not of that size");
    const reader = opts.state === undefined ? this.reader(em, tenantId) : this.#borderReader(em, tenantId, opts.state.border);
    const { nodes } = await appendLeaves(reader, first, hashes);
    // Hashes as bytes in one parameter each (`packedBytes`), the rest as array literals.
    const leafHashes = packedBytes(hashes);
    const leafRows =
      "insert into leaves (tenant_id, leaf_index, entry_id, leaf_hash, recorded_at) select ?, ?::bigint + t.n - 1, t.e, substring(?::bytea from t.o for t.l), ? from unnest(?::text[], ?::int[], ?::int[]) with ordinality as t(e, o, l, n)";
    const leafParams = [tenantId, first, leafHashes.bytes, recordedAt, arrayLiteral(leaves.map((l) => l.entryId)), leafHashes.offsets, leafHashes.lengths];
    const nodeHashes = packedBytes(nodes.map((n) => n.hash));
    const nodeRows = "insert into tree_nodes (tenant_id, level, idx, hash) select ?, t.v, t.x, substring(?::bytea from t.o for t.l) from unnest(?::smallint[], ?::bigint[], ?::int[], ?::int[]) as t(v, x, o, l)";
    const nodeParams = [tenantId, nodeHashes.bytes, arrayLiteral(nodes.map((n) => n.id.level)), arrayLiteral(nodes.map((n) => n.id.index)), nodeHashes.offsets, nodeHashes.lengths];
    const ctes = [...(opts.with !== undefined ? [`w0 as (${opts.with.sql})`] : []), `w1 as (${leafRows})`];
    await em.execute(`with ${ctes.join(", ")} ${nodeRows}`, [...(opts.with?.params ?? []), ...leafParams, ...nodeParams]);
  }

  /** The root of the tree of `size` leaves. */
  root(em: Statements, tenantId: string, size: number): Promise<Uint8Array> {
    return this.#ranged(() => rootAt(this.reader(em, tenantId), size));
  }

  /** RFC 6962 inclusion path of leaf `index` in the tree of `size` leaves. */
  inclusionProof(em: Statements, tenantId: string, index: number, size: number): Promise<Uint8Array[]> {
    if (index >= size) return Promise.reject(new TreeRangeError("the leaf is not in a tree of that size"));
    return this.#ranged(() => inclusionProof(this.reader(em, tenantId), index, size));
  }

  /** RFC 6962 consistency proof between sizes `first` and `second`. */
  consistencyProof(em: Statements, tenantId: string, first: number, second: number): Promise<Uint8Array[]> {
    return this.#ranged(() => consistencyProof(this.reader(em, tenantId), first, second));
  }

  /** libs/tlog's node-hash reader over one tenant's `tree_nodes`, in the caller's transaction. */
  reader(em: Statements, tenantId: string): NodeHashReader {
    return {
      getNodes: async (ids: readonly NodeId[]) => {
        if (ids.length === 0) return [];
        const rows = await em.execute<{ level: number; idx: string; hash: Buffer }[]>(
          "select n.level, n.idx, n.hash from tree_nodes n join unnest(?::smallint[], ?::bigint[]) as w(level, idx) on n.level = w.level and n.idx = w.idx where n.tenant_id = ?",
          [`{${ids.map((i) => i.level).join(",")}}`, `{${ids.map((i) => i.index).join(",")}}`, tenantId],
        );
        const byKey = new Map(rows.map((r) => [`${r.level}/${r.idx}`, new Uint8Array(r.hash)]));
        return ids.map((id) => {
          const h = byKey.get(`${id.level}/${id.index}`);
          if (h === undefined) throw new MissingNodeError(id);
          return h;
        });
      },
    };
  }

  /** A reader that answers from the border read with the size, and asks Postgres only for anything else. */
  #borderReader(em: Statements, tenantId: string, border: ReadonlyMap<string, Uint8Array>): NodeHashReader {
    const db = this.reader(em, tenantId);
    return {
      getNodes: async (ids: readonly NodeId[]) => {
        const missing = ids.filter((id) => !border.has(`${id.level}/${id.index}`));
        const fetched = missing.length === 0 ? [] : await db.getNodes(missing);
        const byKey = new Map(missing.map((id, i) => [`${id.level}/${id.index}`, fetched[i]!]));
        return ids.map((id) => border.get(`${id.level}/${id.index}`) ?? byKey.get(`${id.level}/${id.index}`)!);
      },
    };
  }

  async #ranged<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof MissingNodeError || (err instanceof Error && /size|index|range/i.test(err.message) && !(err as { code?: unknown }).code)) throw new TreeRangeError("the tree is smaller than that", { cause: err });
      throw err;
    }
  }
}
