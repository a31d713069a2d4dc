// libs/tlog's checkpoints, signed notes and proofs verify with an independent
// RFC 6962 implementation: Go's golang.org/x/mod/sumdb/note,
// github.com/transparency-dev/formats/log and transparency-dev/merkle
// (test/go-verifier); tampering with any of them is refused there too.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryNodeStore,
  appendLeaves,
  consistencyProof,
  generateNoteKey,
  inclusionProof,
  leafHash,
  parseSignerKey,
  signCheckpoint,
} from "@bulwark/tlog";
import { runGoVerifier } from "../support/go-verifier.js";

const origin = "bulwark.test/audit/ten_go";
const key = generateNoteKey(origin);
const leaves = Array.from({ length: 37 }, (_, i) => new TextEncoder().encode(`{"entry":${i}}`));

async function log() {
  const store = new MemoryNodeStore();
  const r1 = await appendLeaves(store, 0, leaves.slice(0, 13).map(leafHash));
  await store.putNodes(r1.nodes);
  const r2 = await appendLeaves(store, r1.size, leaves.slice(13).map(leafHash));
  await store.putNodes(r2.nodes);
  const signer = parseSignerKey(key.signerKey);
  const old = await signCheckpoint({ origin, size: r1.size, rootHash: r1.root }, signer);
  const current = await signCheckpoint({ origin, size: r2.size, rootHash: r2.root }, signer);
  const withProofs = await Promise.all(leaves.map(async (leaf, index) => ({ index, leaf, proof: await inclusionProof(store, index, r2.size) })));
  return { store, old, current, r1, r2, withProofs };
}

test("a checkpoint, every inclusion proof, the whole log and consistency with an older checkpoint verify in Go", async () => {
  const { store, old, current, r1, r2, withProofs } = await log();
  const res = runGoVerifier({
    verifierKey: key.verifierKey,
    origin,
    checkpoint: current,
    leaves: withProofs,
    allLeaves: true,
    consistency: [
      { checkpoint: old, proof: await consistencyProof(store, r1.size, r2.size) },
      { size: 1, root: leafHash(leaves[0]!), proof: await consistencyProof(store, 1, r2.size) },
      { size: 32, root: (await appendLeaves(new MemoryNodeStore(), 0, leaves.slice(0, 32).map(leafHash))).root, proof: await consistencyProof(store, 32, r2.size) },
    ],
  });
  assert.equal(res.error, undefined);
  assert.equal(res.ok, true);
  assert.equal(res.summary?.size, 37);
  assert.equal(res.summary?.inclusionChecked, 37);
  assert.equal(res.summary?.rootRecomputed, true);
  assert.equal(res.summary?.consistencyChecked, 3);
});

test("Go refuses a tampered checkpoint, leaf, proof, key or consistency proof", async () => {
  const { store, old, current, r1, r2, withProofs } = await log();
  const base = { verifierKey: key.verifierKey, origin, checkpoint: current };
  const lines = current.split("\n");
  const forgedRoot = Buffer.alloc(32, 1).toString("base64");
  const cases: [string, Parameters<typeof runGoVerifier>[0]][] = [
    ["checkpoint body changed", { ...base, checkpoint: [lines[0], lines[1], forgedRoot, ...lines.slice(3)].join("\n") }],
    ["another origin expected", { ...base, origin: "bulwark.test/audit/other" }],
    ["another key", { ...base, verifierKey: generateNoteKey(origin).verifierKey }],
    ["a leaf edited", { ...base, leaves: [{ ...withProofs[5]!, leaf: new TextEncoder().encode('{"entry":55}') }] }],
    ["a proof element flipped", { ...base, leaves: [{ ...withProofs[5]!, proof: withProofs[5]!.proof.map((p, i) => (i === 1 ? p.map((b, j) => (j === 0 ? b ^ 1 : b)) : p)) }] }],
    ["a leaf deleted from the whole log", { ...base, leaves: withProofs.filter((l) => l.index !== 9), allLeaves: true }],
    ["two leaves reordered", { ...base, leaves: withProofs.map((l, i) => (i === 3 ? { ...withProofs[4]!, index: 3 } : i === 4 ? { ...withProofs[3]!, index: 4 } : l)), allLeaves: true }],
    ["consistency with a forged old root", { ...base, consistency: [{ size: r1.size, root: Buffer.alloc(32, 2), proof: await consistencyProof(store, r1.size, r2.size) }] }],
    ["consistency proof for other sizes", { ...base, consistency: [{ checkpoint: old, proof: await consistencyProof(store, r1.size + 1, r2.size) }] }],
  ];
  for (const [name, input] of cases) {
    const res = runGoVerifier(input);
    assert.equal(res.ok, false, name);
    assert.match(res.error ?? "", /^FAIL: /, name);
  }
});
