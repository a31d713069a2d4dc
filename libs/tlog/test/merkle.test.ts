import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  EMPTY_ROOT,
  MemoryNodeStore,
  RootBuilder,
  appendLeaves,
  consistencyProof,
  inclusionProof,
  isNodeNeededAfterRetention,
  leafHash,
  nodeHash,
  rootAt,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
  type NodeHashReader,
  type NodeId,
} from "../src/index.js";

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const b64 = (s: string | null | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? "", "base64"));

// RFC 6962 test tree (transparency-dev/merkle testonly/constants.go).
const leafInputs = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"].map(hex);
const rootHashes = [
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];
const nodeHashes = [
  [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
  ],
  [
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
  ],
  ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
  ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];
// transparency-dev/merkle cmd/proofgen: [leaf index (1-based), tree size, proof].
const inclusionVectors: [number, number, string[]][] = [
  [1, 1, []],
  [1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]],
  [6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
  [3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]],
  [2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]],
];
const consistencyVectors: [number, number, string[]][] = [
  [1, 1, []],
  [1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]],
  [6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
  [2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]],
  [6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
];

async function buildStore(leaves: readonly Uint8Array[]): Promise<MemoryNodeStore> {
  const store = new MemoryNodeStore();
  let size = 0;
  // Append in uneven batches to exercise the compact-range border.
  for (let i = 0; i < leaves.length; ) {
    const n = Math.min(1 + (i % 3), leaves.length - i);
    const r = await appendLeaves(store, size, leaves.slice(i, i + n).map(leafHash));
    await store.putNodes(r.nodes);
    size = r.size;
    i += n;
  }
  return store;
}

test("leaf and node hashing follow RFC 6962 (0x00 leaf, 0x01 node prefixes)", () => {
  assert.equal(toHex(EMPTY_ROOT), rootHashes[0]);
  leafInputs.forEach((l, i) => assert.equal(toHex(leafHash(l)), nodeHashes[0]![i]));
  assert.equal(toHex(nodeHash(hex(nodeHashes[0]![0]!), hex(nodeHashes[0]![1]!))), nodeHashes[1]![0]);
});

test("roots of every prefix of the RFC 6962 test tree, from the store, in memory and incrementally", async () => {
  const store = await buildStore(leafInputs);
  const builder = new RootBuilder();
  for (let size = 0; size <= 8; size++) {
    assert.equal(toHex(await rootAt(store, size)), rootHashes[size], `store root at ${size}`);
    assert.equal(toHex(rootFromLeafHashes(leafInputs.slice(0, size).map(leafHash))), rootHashes[size], `memory root at ${size}`);
    assert.equal(toHex(builder.root()), rootHashes[size], `incremental root at ${size}`);
    if (size < 8) builder.append(leafHash(leafInputs[size]!));
  }
});

test("the store holds exactly the complete subtrees of the RFC 6962 test tree", async () => {
  const store = await buildStore(leafInputs);
  for (let level = 0; level < nodeHashes.length; level++) {
    const ids: NodeId[] = nodeHashes[level]!.map((_, index) => ({ level, index }));
    assert.deepEqual((await store.getNodes(ids)).map(toHex), nodeHashes[level]);
  }
  assert.equal(store.size, 15);
});

test("inclusion and consistency proofs match the transparency-dev/merkle vectors", async () => {
  const store = await buildStore(leafInputs);
  for (const [leaf, size, want] of inclusionVectors) {
    const proof = await inclusionProof(store, leaf - 1, size);
    assert.deepEqual(proof.map(toHex), want, `inclusion ${leaf - 1}@${size}`);
    assert.ok(verifyInclusion(leaf - 1, size, leafHash(leafInputs[leaf - 1]!), proof, hex(rootHashes[size]!)));
  }
  for (const [s1, s2, want] of consistencyVectors) {
    const proof = await consistencyProof(store, s1, s2);
    assert.deepEqual(proof.map(toHex), want, `consistency ${s1}→${s2}`);
    assert.ok(verifyConsistency(s1, s2, proof, hex(rootHashes[s1]!), hex(rootHashes[s2]!)));
  }
});

const testdata = join(fileURLToPath(import.meta.url), "../../../test/testdata");
function vectorFiles(kind: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (f.endsWith(".json")) out.push(p);
    }
  };
  walk(join(testdata, kind));
  return out.sort();
}

test("verification agrees with every transparency-dev/merkle inclusion probe", () => {
  const files = vectorFiles("inclusion");
  assert.ok(files.length > 50);
  for (const f of files) {
    const v = JSON.parse(readFileSync(f, "utf8")) as { leafIdx: number; treeSize: number; root: string | null; leafHash: string | null; proof: string[] | null; wantErr: boolean };
    const ok = verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), (v.proof ?? []).map(b64), b64(v.root));
    assert.equal(ok, !v.wantErr, f);
  }
});

test("verification agrees with every transparency-dev/merkle consistency probe", () => {
  const files = vectorFiles("consistency");
  assert.ok(files.length > 50);
  for (const f of files) {
    const v = JSON.parse(readFileSync(f, "utf8")) as { size1: number; size2: number; root1: string | null; root2: string | null; proof: string[] | null; wantErr: boolean };
    const ok = verifyConsistency(v.size1, v.size2, (v.proof ?? []).map(b64), b64(v.root1), b64(v.root2));
    assert.equal(ok, !v.wantErr, f);
  }
});

test("every proof of a 70-leaf tree verifies, and a flipped bit or a wrong index does not", async () => {
  const leaves = Array.from({ length: 70 }, (_, i) => new TextEncoder().encode(`entry ${i}`));
  const store = await buildStore(leaves);
  const hashes = leaves.map(leafHash);
  const roots = Array.from({ length: 71 }, (_, n) => rootFromLeafHashes(hashes.slice(0, n)));
  for (let size = 1; size <= 70; size++) {
    assert.deepEqual(await rootAt(store, size), roots[size]);
    for (let i = 0; i < size; i++) {
      const proof = await inclusionProof(store, i, size);
      assert.ok(verifyInclusion(i, size, hashes[i]!, proof, roots[size]!), `inclusion ${i}@${size}`);
      if (size > 1) assert.ok(!verifyInclusion((i + 1) % size, size, hashes[i]!, proof, roots[size]!));
      if (proof.length > 0) {
        const bad = proof.map((p) => new Uint8Array(p));
        bad[0]![0]! ^= 1;
        assert.ok(!verifyInclusion(i, size, hashes[i]!, bad, roots[size]!));
      }
    }
    for (let s1 = 1; s1 <= size; s1++) {
      const proof = await consistencyProof(store, s1, size);
      assert.ok(verifyConsistency(s1, size, proof, roots[s1]!, roots[size]!), `consistency ${s1}→${size}`);
      if (s1 < size) assert.ok(!verifyConsistency(s1, size, proof, roots[s1 - 1]!, roots[size]!));
    }
  }
});

test("retention: after pruning nodes left of the boundary, the remaining leaves still prove inclusion and consistency", async () => {
  const leaves = Array.from({ length: 45 }, (_, i) => new TextEncoder().encode(`entry ${i}`));
  const hashes = leaves.map(leafHash);
  for (const first of [1, 3, 8, 13, 32, 44]) {
    const store = await buildStore(leaves);
    const before = store.size;
    for (const id of store.ids()) if (!isNodeNeededAfterRetention(id, first)) store.delete(id);
    if (first > 2) assert.ok(store.size < before, `something was pruned at ${first}`);
    const reader: NodeHashReader = store;
    for (let size = first + 1; size <= 45; size++) {
      const root = rootFromLeafHashes(hashes.slice(0, size));
      assert.deepEqual(await rootAt(reader, size), root);
      for (let i = first; i < size; i++) assert.ok(verifyInclusion(i, size, hashes[i]!, await inclusionProof(reader, i, size), root), `inclusion ${i}@${size} after pruning below ${first}`);
      for (let s1 = first; s1 <= size; s1++) {
        const r1 = rootFromLeafHashes(hashes.slice(0, s1));
        assert.ok(verifyConsistency(s1, size, await consistencyProof(reader, s1, size), r1, root), `consistency ${s1}→${size} after pruning below ${first}`);
      }
    }
  }
});

test("large indexes stay exact beyond 32 bits", async () => {
  const asked: NodeId[] = [];
  const fake: NodeHashReader = {
    getNodes: (ids) => {
      asked.push(...ids);
      return Promise.resolve(ids.map((id) => leafHash(new TextEncoder().encode(`${id.level}/${id.index}`))));
    },
  };
  const size = 2 ** 40 + 12345;
  const index = 2 ** 33 + 7;
  const proof = await inclusionProof(fake, index, size);
  assert.equal(proof.length, 41);
  for (const id of asked) {
    assert.ok(Number.isSafeInteger(id.index) && id.index >= 0);
    assert.ok((id.index + 1) * 2 ** id.level <= size, `node ${id.level}/${id.index} lies inside the tree`);
  }
  // The sibling at level 0 is the leaf left of the odd `index`.
  assert.ok(asked.some((id) => id.level === 0 && id.index === index - 1));
});
