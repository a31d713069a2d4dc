/**
 * A Merkle log kept as the hashes of its complete (perfect) subtrees, in an
 * abstract async store: the node at (level, index) is the root of the
 * subtree over leaves [index·2^level, (index+1)·2^level). Every inclusion and
 * consistency proof for any tree size (RFC 9162 sections 2.1.3.1, 2.1.4.1)
 * is assembled from such nodes: a proof element that is not a complete
 * subtree (the right edge of a tree whose size is not a power of two) is
 * rehashed from the complete nodes that make it up.
 *
 * Indexes are JavaScript numbers: exact up to 2^53 leaves. No bitwise
 * operators are used on them (those truncate to 32 bits).
 */
import { EMPTY_ROOT, HASH_SIZE, largestPowerOfTwoBelow, nodeHash } from "./hash.js";

export interface NodeId {
  /** 0 for leaf hashes. */
  readonly level: number;
  readonly index: number;
}

export interface StoredNode {
  readonly id: NodeId;
  readonly hash: Uint8Array;
}

export class MissingNodeError extends Error {
  constructor(readonly id: NodeId) {
    super(`tree node ${id.level}/${id.index} is not stored`);
    this.name = "MissingNodeError";
  }
}

/** Where the node hashes live (Postgres in the audit service, memory in tests). */
export interface NodeHashReader {
  /**
   * The hashes of the nodes named, in the same order. Throws MissingNodeError
   * (or any error) when one is absent.
   */
  getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]>;
}

export interface NodeHashStore extends NodeHashReader {
  putNodes(nodes: readonly StoredNode[]): Promise<void>;
}

const key = (id: NodeId): string => `${id.level}/${id.index}`;

export class MemoryNodeStore implements NodeHashStore {
  private readonly nodes = new Map<string, Uint8Array>();

  getNodes(ids: readonly NodeId[]): Promise<Uint8Array[]> {
    return Promise.resolve(
      ids.map((id) => {
        const h = this.nodes.get(key(id));
        if (!h) throw new MissingNodeError(id);
        return h;
      }),
    );
  }

  putNodes(nodes: readonly StoredNode[]): Promise<void> {
    for (const n of nodes) this.nodes.set(key(n.id), n.hash);
    return Promise.resolve();
  }

  delete(id: NodeId): boolean {
    return this.nodes.delete(key(id));
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()].map((k) => {
      const [level, index] = k.split("/").map(Number) as [number, number];
      return { level, index };
    });
  }

  get size(): number {
    return this.nodes.size;
  }
}

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative safe integer`);
}

/** First leaf index covered by a node, and one past the last. */
export function nodeRange(id: NodeId): { begin: number; end: number } {
  const width = 2 ** id.level;
  return { begin: id.index * width, end: (id.index + 1) * width };
}

/**
 * The complete subtrees that make up leaves [begin, end), left to right: the
 * largest aligned block at each step. For every range that occurs in a proof
 * (and for every prefix [0, n)), the levels strictly decrease, so MTH of the
 * range is the right fold of these nodes.
 */
export function rangeNodes(begin: number, end: number): NodeId[] {
  const out: NodeId[] = [];
  let b = begin;
  while (b < end) {
    let level = 0;
    for (;;) {
      const s = 2 ** (level + 1);
      if (b % s === 0 && b + s <= end) level++;
      else break;
    }
    const width = 2 ** level;
    out.push({ level, index: b / width });
    b += width;
  }
  return out;
}

/** The compact range of a tree of `size` leaves: the nodes its root folds. */
export function prefixNodes(size: number): NodeId[] {
  checkSize("size", size);
  return rangeNodes(0, size);
}

function foldRight(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 0) return EMPTY_ROOT;
  let acc = hashes[hashes.length - 1]!;
  for (let i = hashes.length - 2; i >= 0; i--) acc = nodeHash(hashes[i]!, acc);
  return acc;
}

/** Leaf ranges whose MTH form the inclusion proof of `index` in a tree of `size` (RFC 9162 PATH), in proof order. */
export function inclusionRanges(index: number, size: number): [number, number][] {
  checkSize("index", index);
  checkSize("size", size);
  if (index >= size) throw new RangeError(`leaf index ${index} is not below tree size ${size}`);
  const out: [number, number][] = [];
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (index < lo + k) {
      out.push([lo + k, hi]);
      hi = lo + k;
    } else {
      out.push([lo, lo + k]);
      lo += k;
    }
  }
  return out.reverse();
}

/** Leaf ranges whose MTH form the consistency proof from `size1` to `size2` (RFC 9162 SUBPROOF), in proof order. */
export function consistencyRanges(size1: number, size2: number): [number, number][] {
  checkSize("size1", size1);
  checkSize("size2", size2);
  if (size1 > size2) throw new RangeError(`first size ${size1} is above second size ${size2}`);
  if (size1 === 0 || size1 === size2) return [];
  const out: [number, number][] = [];
  let lo = 0;
  let hi = size2;
  let m = size1;
  let complete = true;
  while (m !== hi - lo) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (m <= k) {
      out.push([lo + k, hi]);
      hi = lo + k;
    } else {
      out.push([lo, lo + k]);
      lo += k;
      m -= k;
      complete = false;
    }
  }
  if (!complete) out.push([lo, hi]);
  return out.reverse();
}

/** Fetches the nodes of several ranges in one store call and hashes each range. */
async function hashRanges(store: NodeHashReader, ranges: readonly [number, number][]): Promise<Uint8Array[]> {
  const perRange = ranges.map(([b, e]) => rangeNodes(b, e));
  const unique = new Map<string, NodeId>();
  for (const ids of perRange) for (const id of ids) unique.set(key(id), id);
  const ids = [...unique.values()];
  const hashes = ids.length > 0 ? await store.getNodes(ids) : [];
  if (hashes.length !== ids.length) throw new Error("node store returned the wrong number of hashes");
  const byKey = new Map<string, Uint8Array>();
  ids.forEach((id, i) => {
    const h = hashes[i]!;
    if (h.length !== HASH_SIZE) throw new Error(`node ${key(id)} has a hash of ${h.length} bytes`);
    byKey.set(key(id), h);
  });
  return perRange.map((ids) => foldRight(ids.map((id) => byKey.get(key(id))!)));
}

/** MTH of the first `size` leaves. */
export async function rootAt(store: NodeHashReader, size: number): Promise<Uint8Array> {
  checkSize("size", size);
  if (size === 0) return EMPTY_ROOT;
  const [root] = await hashRanges(store, [[0, size]]);
  return root!;
}

/** RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves. */
export async function inclusionProof(store: NodeHashReader, index: number, size: number): Promise<Uint8Array[]> {
  return hashRanges(store, inclusionRanges(index, size));
}

/** RFC 9162 consistency proof from the tree of `size1` leaves to the tree of `size2` leaves. */
export async function consistencyProof(store: NodeHashReader, size1: number, size2: number): Promise<Uint8Array[]> {
  return hashRanges(store, consistencyRanges(size1, size2));
}

export interface AppendResult {
  /** Every node that became complete: the new leaves and the interior nodes they closed. Persist them all. */
  readonly nodes: StoredNode[];
  readonly size: number;
  readonly root: Uint8Array;
}

/**
 * Appends leaf hashes to a tree of `size` leaves: reads the compact range of
 * the current tree (at most log2(size) nodes), and returns the nodes to store.
 * The caller serialises appends per log (one writer at a time).
 */
export async function appendLeaves(store: NodeHashReader, size: number, leafHashes: readonly Uint8Array[]): Promise<AppendResult> {
  checkSize("size", size);
  const border = prefixNodes(size);
  const borderHashes = border.length > 0 ? await store.getNodes(border) : [];
  const stack: StoredNode[] = border.map((id, i) => ({ id, hash: borderHashes[i]! }));
  const nodes: StoredNode[] = [];
  let n = size;
  for (const h of leafHashes) {
    if (h.length !== HASH_SIZE) throw new Error(`leaf hash of ${h.length} bytes`);
    let cur: StoredNode = { id: { level: 0, index: n }, hash: h };
    nodes.push(cur);
    while (stack.length > 0 && stack[stack.length - 1]!.id.level === cur.id.level) {
      const left = stack.pop()!;
      cur = { id: { level: cur.id.level + 1, index: left.id.index / 2 }, hash: nodeHash(left.hash, cur.hash) };
      nodes.push(cur);
    }
    stack.push(cur);
    n++;
  }
  return { nodes, size: n, root: foldRight(stack.map((s) => s.hash)) };
}

/**
 * Retention: once leaves [0, firstRetained) are removed, which stored nodes
 * are still needed so that every remaining leaf proves its inclusion in every
 * tree size, and consistency between any two sizes ≥ firstRetained stays
 * provable? Every node that covers a retained leaf, and the compact range of
 * [0, firstRetained) (the maximal complete subtrees left of the boundary).
 * Every other node (wholly left of the boundary) may be deleted.
 */
export function isNodeNeededAfterRetention(id: NodeId, firstRetained: number): boolean {
  const { end } = nodeRange(id);
  if (end > firstRetained) return true;
  // Maximal: its parent reaches past the boundary.
  const parentEnd = (Math.floor(id.index / 2) + 1) * 2 ** (id.level + 1);
  return parentEnd > firstRetained;
}

/** The nodes wholly left of `firstRetained` that retention keeps (the compact range of [0, firstRetained)). */
export function retainedBoundaryNodes(firstRetained: number): NodeId[] {
  return prefixNodes(firstRetained);
}
