/**
 * Proof verification, RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2
 * (consistency), with the edge cases of transparency-dev/merkle's `proof`
 * package (a consistency proof from the empty tree is refused as meaningless).
 */
import { HASH_SIZE, hashEqual, nodeHash } from "./hash.js";

export class ProofError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProofError";
  }
}

const isOdd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);

function checkHashes(proof: readonly Uint8Array[]): void {
  for (const p of proof) if (p.length !== HASH_SIZE) throw new ProofError(`proof element of ${p.length} bytes`);
}

/** The root that an inclusion proof implies; throws ProofError when it is malformed. */
export function rootFromInclusionProof(index: number, size: number, leafHashValue: Uint8Array, proof: readonly Uint8Array[]): Uint8Array {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0) throw new ProofError("bad index or size");
  if (index >= size) throw new ProofError(`index ${index} is beyond size ${size}`);
  if (leafHashValue.length !== HASH_SIZE) throw new ProofError("leaf hash has the wrong size");
  checkHashes(proof);
  let fn = index;
  let sn = size - 1;
  let r = leafHashValue;
  for (const p of proof) {
    if (sn === 0) throw new ProofError("proof is too long");
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError("proof is too short");
  return r;
}

export function verifyInclusion(index: number, size: number, leafHashValue: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  try {
    return hashEqual(rootFromInclusionProof(index, size, leafHashValue, proof), root);
  } catch (e) {
    if (e instanceof ProofError) return false;
    throw e;
  }
}

/** The second root that a consistency proof implies from the first; throws ProofError when it is malformed or contradicts root1. */
export function rootFromConsistencyProof(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0) throw new ProofError("bad sizes");
  if (size2 < size1) throw new ProofError(`size2 (${size2}) < size1 (${size1})`);
  if (size1 === 0) throw new ProofError("consistency proof from the empty tree is meaningless");
  checkHashes(proof);
  if (size1 === size2) {
    if (proof.length > 0) throw new ProofError("size1 = size2, but the proof is not empty");
    return root1;
  }
  if (proof.length === 0) throw new ProofError("empty proof");
  // RFC 9162 2.1.4.2: if size1 is an exact power of 2, prepend root1.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) throw new ProofError("proof is too long");
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError("proof is too short");
  if (!hashEqual(fr, root1)) throw new ProofError("proof does not match the first root");
  return sr;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

export function verifyConsistency(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array, root2: Uint8Array): boolean {
  try {
    return hashEqual(rootFromConsistencyProof(size1, size2, proof, root1), root2);
  } catch (e) {
    if (e instanceof ProofError) return false;
    throw e;
  }
}
