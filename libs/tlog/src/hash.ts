/**
 * RFC 6962 / RFC 9162 (section 2.1.1) Merkle tree hashing with SHA-256:
 * a leaf hashes as SHA-256(0x00 || leaf), an interior node as
 * SHA-256(0x01 || left || right), the empty tree as SHA-256("").
 */
import { createHash, timingSafeEqual } from "node:crypto";

export const HASH_SIZE = 32;

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** MTH({}) = SHA-256() */
export const EMPTY_ROOT: Uint8Array = new Uint8Array(createHash("sha256").digest());

/** MTH({d}) = SHA-256(0x00 || d) */
export function leafHash(leaf: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(LEAF_PREFIX).update(leaf).digest());
}

/** SHA-256(0x01 || left || right) */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(NODE_PREFIX).update(left).update(right).digest());
}

/** Constant-time comparison of two hashes (false when lengths differ). */
export function hashEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Largest power of two strictly smaller than n (n > 1). */
export function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * MTH(D[n]) over leaf hashes held in memory (RFC 6962 section 2.1): the
 * reference computation, used by verifiers that have every leaf (an export).
 * Linear time, logarithmic stack.
 */
export function rootFromLeafHashes(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 0) return EMPTY_ROOT;
  // A stack of complete subtrees, as in a compact range: merge equal sizes.
  const stack: { size: number; hash: Uint8Array }[] = [];
  for (const h of hashes) {
    let cur = { size: 1, hash: h };
    while (stack.length > 0 && stack[stack.length - 1]!.size === cur.size) {
      const left = stack.pop()!;
      cur = { size: left.size * 2, hash: nodeHash(left.hash, cur.hash) };
    }
    stack.push(cur);
  }
  let acc = stack.pop()!.hash;
  while (stack.length > 0) acc = nodeHash(stack.pop()!.hash, acc);
  return acc;
}

/** Incremental MTH over a stream of leaf hashes (for verifying large exports). */
export class RootBuilder {
  private readonly stack: { size: number; hash: Uint8Array }[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  append(leafHashValue: Uint8Array): void {
    let cur = { size: 1, hash: leafHashValue };
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.size === cur.size) {
      const left = this.stack.pop()!;
      cur = { size: left.size * 2, hash: nodeHash(left.hash, cur.hash) };
    }
    this.stack.push(cur);
    this.count++;
  }

  root(): Uint8Array {
    if (this.stack.length === 0) return EMPTY_ROOT;
    let acc = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i--) acc = nodeHash(this.stack[i]!.hash, acc);
    return acc;
  }
}
