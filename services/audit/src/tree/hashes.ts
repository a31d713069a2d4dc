import { createHash } from "node:crypto";

/**
 * RFC 6962 / RFC 9162 hashing over a store of complete-subtree hashes: a
 * node (level, index) is the hash of leaves [index·2^level, (index+1)·2^level).
 * Every hash a root or proof needs is a stored node or a fold of them, so a
 * proof at any size is computed from one batch of reads. (libs/tlog holds
 * the mesh's reference implementation and the verifiers.)
 */
export type NodeId = readonly [level: number, index: number];

/** SHA-256(0x00 || leaf). */
export function leafHash(leaf: Uint8Array): Buffer {
  return createHash("sha256").update(Buffer.from([0])).update(leaf).digest();
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash("sha256").update(Buffer.from([1])).update(left).update(right).digest();
}

/** SHA-256 of nothing: the root of the empty tree. */
export const emptyRoot: Buffer = createHash("sha256").digest();

/** The largest power of two strictly less than n (n ≥ 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** A range of leaves [start, end) whose hash a proof needs. */
export interface Range {
  readonly start: number;
  readonly end: number;
}

/** The stored nodes whose fold is the hash of [start, end) (start aligned as RFC 6962's recursion leaves it). */
export function nodesOf(r: Range): NodeId[] {
  const n = r.end - r.start;
  if (n <= 0) return [];
  if ((n & (n - 1)) === 0 && r.start % n === 0) return [[Math.log2(n), r.start / n]];
  const k = split(n);
  return [...nodesOf({ start: r.start, end: r.start + k }), ...nodesOf({ start: r.start + k, end: r.end })];
}

/** The hash of [start, end) from stored nodes (`node` answers every id of `nodesOf`). */
export function rangeHash(r: Range, node: (id: NodeId) => Uint8Array): Uint8Array {
  const n = r.end - r.start;
  if (n === 0) return emptyRoot;
  if ((n & (n - 1)) === 0 && r.start % n === 0) return node([Math.log2(n), r.start / n]);
  const k = split(n);
  return nodeHash(rangeHash({ start: r.start, end: r.start + k }, node), rangeHash({ start: r.start + k, end: r.end }, node));
}

/** RFC 6962 PATH(m, D[0:n]) as ranges, from the leaf up. */
export function inclusionRanges(m: number, n: number, offset = 0): Range[] {
  if (n <= 1) return [];
  const k = split(n);
  if (m < k) return [...inclusionRanges(m, k, offset), { start: offset + k, end: offset + n }];
  return [...inclusionRanges(m - k, n - k, offset + k), { start: offset, end: offset + k }];
}

/** RFC 6962 PROOF(m, D[0:n]) as ranges. */
export function consistencyRanges(m: number, n: number): Range[] {
  if (m === 0 || m === n) return [];
  const sub = (m: number, n: number, b: boolean, offset: number): Range[] => {
    if (m === n) return b ? [] : [{ start: offset, end: offset + m }];
    const k = split(n);
    if (m <= k) return [...sub(m, k, b, offset), { start: offset + k, end: offset + n }];
    return [...sub(m - k, n - k, false, offset + k), { start: offset, end: offset + k }];
  };
  return sub(m, n, true, 0);
}

/** The nodes completed by appending leaf `index` (the leaf itself first, then each parent it closes). */
export function completedBy(index: number): NodeId[] {
  const ids: NodeId[] = [[0, index]];
  let level = 0;
  let i = index;
  while (i % 2 === 1) {
    i = (i - 1) / 2;
    level += 1;
    ids.push([level, i]);
  }
  return ids;
}
