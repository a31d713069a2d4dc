/**
 * The contract of bulwark.audit.v1.AuditLogService: every RPC through the
 * generated client against a real audit server (real Postgres and NATS,
 * tenancy and keys beside it), its success case and each documented error.
 * The trail is fed by tenancy's events (tenant.created, tenant.updated).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { AuditLogService, Outcome } from "@bulwark/contracts";
import { leafHash, openCheckpoint, parseVerifierKey, verifyConsistency, verifyInclusion } from "@bulwark/tlog";
import { entryOfLeaf } from "@bulwark/audit";
import { clientFor, eventually } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { auditOperator, auditUser, newTenant, startAuditMesh, waitForEntries, type AuditMesh } from "./support-audit.js";

let mesh: AuditMesh;
let tenantA: string;
let tenantB: string;

before(async () => {
  // Exports read pages of two leaves, so every export below spans several pages.
  process.env["AUDIT_EXPORT_PAGE_SIZE"] = "2";
  mesh = await startAuditMesh();
  tenantA = await newTenant(mesh);
  tenantB = await newTenant(mesh);
  for (const name of ["One", "Two", "Three", "Four"]) await mesh.tenancyOps.updateTenant({ tenantId: tenantA, displayName: `Audit ${name}`, updateMask: { paths: ["display_name"] } });
  await waitForEntries(mesh, tenantA, 5);
  await waitForEntries(mesh, tenantB, 1);
});
after(async () => {
  await mesh?.stop();
});

describe("AuditLogService.GetCheckpoint and GetVerifierKey", () => {
  test("the checkpoint is a C2SP signed note that the verifier key opens, origin <name>/audit/<tenant>", async () => {
    const a = auditUser(mesh, tenantA);
    const { checkpoint } = await a.getCheckpoint({ refresh: true });
    const { verifierKey } = await a.getVerifierKey({});
    assert.match(verifierKey, /^audit\.test\/audit\/ten_[^+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/);
    const cp = openCheckpoint(checkpoint, parseVerifierKey(verifierKey), `audit.test/audit/${tenantA}`);
    assert.ok(cp.size >= 5);
    const again = await a.getCheckpoint({});
    assert.equal(again.checkpoint, checkpoint, "nothing new: the same signed size");
  });

  test("an operator names the tenant; a tenant naming another tenant gets NOT_FOUND; bad ids INVALID_ARGUMENT", async () => {
    const op = auditOperator(mesh);
    const { checkpoint } = await op.getCheckpoint({ tenantId: tenantB });
    assert.ok(checkpoint.startsWith(`audit.test/audit/${tenantB}\n`));
    await refusedWith(op.getCheckpoint({}), Code.InvalidArgument, "tenant_id");
    await refusedWith(auditUser(mesh, tenantA).getCheckpoint({ tenantId: tenantB }), Code.NotFound);
    await refusedWith(auditUser(mesh, tenantA).getCheckpoint({ tenantId: "not a tenant" }), Code.InvalidArgument, "tenant_id");
    await refusedWith(op.getCheckpoint({ tenantId: "ten_nobodyhasthisone" }), Code.NotFound);
    await refusedWith(op.getVerifierKey({ tenantId: "bad id" }), Code.InvalidArgument);
  });

  test("without a credential UNAUTHENTICATED, without the permission PERMISSION_DENIED (and the denial is in the trail)", async () => {
    await refusedWith(clientFor(AuditLogService, mesh.audit.baseUrl).getCheckpoint({}), Code.Unauthenticated);
    await refusedWith(auditUser(mesh, tenantA, ["audit.records.read"]).getCheckpoint({}), Code.PermissionDenied);
    await refusedWith(auditUser(mesh, tenantA, ["audit.records.read"]).getVerifierKey({}), Code.PermissionDenied);
    await eventually(async () => (await auditUser(mesh, tenantA).listEntries({ action: "audit.call.denied", outcome: Outcome.DENIED })).entries.length > 0, 10_000);
  });
});

describe("AuditLogService.GetInclusionProof and GetConsistencyProof", () => {
  test("every entry's proof verifies against the signed root, by index and by entry id", async () => {
    const a = auditUser(mesh, tenantA);
    const { verifierKey } = await a.getVerifierKey({});
    const cp = openCheckpoint((await a.getCheckpoint({ refresh: true })).checkpoint, parseVerifierKey(verifierKey));
    const exported = [];
    for await (const m of a.exportEntries({})) if (m.item.case === "entry") exported.push(m.item.value);
    assert.ok(exported.length >= cp.size);
    for (const e of exported.slice(0, cp.size)) {
      const p = await a.getInclusionProof({ leaf: { case: "leafIndex", value: e.leafIndex }, treeSize: BigInt(cp.size) });
      assert.ok(verifyInclusion(Number(e.leafIndex), cp.size, leafHash(e.leaf), p.hashes, cp.rootHash));
      const byId = await a.getInclusionProof({ leaf: { case: "entryId", value: e.entryId } });
      assert.equal(byId.leafIndex, e.leafIndex);
      assert.ok(Number(byId.treeSize) >= cp.size, "size 0 means the latest checkpoint's");
    }
  });

  test("consistency between any two sizes verifies", async () => {
    const a = auditUser(mesh, tenantA);
    const exported = [];
    for await (const m of a.exportEntries({})) if (m.item.case === "entry") exported.push(m.item.value);
    const n = exported.length;
    const roots: Uint8Array[] = [];
    for (let size = 1; size <= n; size++) {
      const { hashes } = await a.getInclusionProof({ leaf: { case: "leafIndex", value: 0n }, treeSize: BigInt(size) });
      void hashes;
    }
    const { checkpoint } = await a.getCheckpoint({});
    const { verifierKey } = await a.getVerifierKey({});
    const cp = openCheckpoint(checkpoint, parseVerifierKey(verifierKey));
    // Roots of every prefix, recomputed from the exported leaves (RFC 6962 MTH).
    const mth = (leaves: Uint8Array[]): Uint8Array => {
      if (leaves.length === 0) return createHash("sha256").digest();
      if (leaves.length === 1) return leafHash(leaves[0]!);
      let k = 1;
      while (k * 2 < leaves.length) k *= 2;
      return createHash("sha256").update(Buffer.from([1])).update(mth(leaves.slice(0, k))).update(mth(leaves.slice(k))).digest();
    };
    for (let size = 1; size <= n; size++) roots.push(mth(exported.slice(0, size).map((e) => e.leaf)));
    assert.deepEqual(Buffer.from(roots[n - 1]!), Buffer.from(cp.rootHash));
    for (let m = 1; m <= n; m++) {
      const { hashes } = await a.getConsistencyProof({ firstSize: BigInt(m), secondSize: BigInt(n) });
      assert.ok(verifyConsistency(m, n, hashes, roots[m - 1]!, roots[n - 1]!), `consistency ${m} → ${n}`);
    }
  });

  test("documented errors: INVALID_ARGUMENT, OUT_OF_RANGE, NOT_FOUND", async () => {
    const a = auditUser(mesh, tenantA);
    await refusedWith(a.getInclusionProof({}), Code.InvalidArgument, "leaf_index");
    await refusedWith(a.getInclusionProof({ leaf: { case: "entryId", value: "nope" } }), Code.InvalidArgument, "entry_id");
    await refusedWith(a.getInclusionProof({ leaf: { case: "entryId", value: "aud_0000000000" } }), Code.NotFound);
    await refusedWith(a.getInclusionProof({ leaf: { case: "leafIndex", value: 0n }, treeSize: 1_000_000n }), Code.OutOfRange);
    await refusedWith(a.getInclusionProof({ leaf: { case: "leafIndex", value: 3n }, treeSize: 2n }), Code.OutOfRange);
    await refusedWith(a.getConsistencyProof({ firstSize: 3n, secondSize: 2n }), Code.InvalidArgument, "first_size");
    await refusedWith(a.getConsistencyProof({ firstSize: 1n, secondSize: 1_000_000n }), Code.OutOfRange);
    await refusedWith(auditOperator(mesh).getConsistencyProof({ tenantId: "ten_nobodyhasthisone", firstSize: 0n, secondSize: 0n }), Code.NotFound);
    await refusedWith(auditUser(mesh, tenantA, ["audit.records.read"]).getInclusionProof({ leaf: { case: "leafIndex", value: 0n } }), Code.PermissionDenied);
  });
});

describe("AuditLogService.GetEntry and ListEntries", () => {
  test("entries are newest first, filtered, paged with a cursor; each decodes from its leaf", async () => {
    const a = auditUser(mesh, tenantA);
    // Tenancy's entries only: the refusals of the tests before are recorded too (audit.call.denied).
    const all = await a.listEntries({ pageSize: 100, action: "tenancy." });
    assert.ok(all.entries.length >= 5);
    for (let i = 1; i < all.entries.length; i++) assert.ok(all.entries[i - 1]!.leafIndex > all.entries[i]!.leafIndex, "newest first");
    for (const e of all.entries) {
      assert.equal(e.tenantId, tenantA);
      assert.equal(e.outcome, Outcome.SUCCESS);
    }
    const updates = await a.listEntries({ action: "tenancy.tenant.updated" });
    assert.equal(updates.entries.length, 4);
    assert.ok(updates.entries.every((e) => e.resource?.type === "tenant" && e.resource.id === tenantA));
    const prefixed = await a.listEntries({ action: "tenancy.tenant." });
    assert.equal(prefixed.entries.length, all.entries.length);
    const first = await a.listEntries({ pageSize: 2, action: "tenancy." });
    assert.equal(first.entries.length, 2);
    const second = await a.listEntries({ pageSize: 2, pageToken: first.nextPageToken, action: "tenancy." });
    assert.ok(second.entries[0]!.leafIndex < first.entries[1]!.leafIndex);
    assert.equal((await a.listEntries({ outcome: Outcome.DENIED, action: "tenancy." })).entries.length, 0);
    assert.equal((await a.listEntries({ actorId: "usr_nobody" })).entries.length, 0);
    assert.equal((await a.listEntries({ resourceType: "tenant", resourceId: tenantA, pageSize: 100 })).entries.length, all.entries.length);
    const got = await a.getEntry({ entryId: all.entries[0]!.entryId });
    assert.deepEqual(got.entry, all.entries[0]);
  });

  test("a tenant never sees another tenant's entries", async () => {
    const b = auditUser(mesh, tenantB);
    const { entries } = await b.listEntries({ pageSize: 100 });
    assert.ok(entries.length >= 1);
    assert.ok(entries.every((e) => e.tenantId === tenantB));
    const aEntry = (await auditUser(mesh, tenantA).listEntries({ pageSize: 1 })).entries[0]!;
    await refusedWith(b.getEntry({ entryId: aEntry.entryId }), Code.NotFound);
    await refusedWith(b.listEntries({ tenantId: tenantA }), Code.NotFound);
    const op = await auditOperator(mesh).listEntries({ tenantId: tenantA, pageSize: 100 });
    assert.ok(op.entries.length >= 5 && op.entries.every((e) => e.tenantId === tenantA));
    const across = await auditOperator(mesh).listEntries({ pageSize: 500 });
    const tenants = new Set(across.entries.map((e) => e.tenantId));
    assert.ok(tenants.has(tenantA) && tenants.has(tenantB), "an operator lists across tenants in the platform scope");
  });

  test("documented errors", async () => {
    const a = auditUser(mesh, tenantA);
    await refusedWith(a.getEntry({ entryId: "" }), Code.InvalidArgument, "entry_id");
    await refusedWith(a.getEntry({ entryId: "aud_0000" }), Code.NotFound);
    await refusedWith(a.listEntries({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
    await refusedWith(a.listEntries({ pageSize: 501 }), Code.InvalidArgument, "page_size");
    await refusedWith(a.listEntries({ startTime: { seconds: 2000n, nanos: 0 }, endTime: { seconds: 1000n, nanos: 0 } }), Code.InvalidArgument, "start_time");
    await refusedWith(a.listEntries({ endTime: { seconds: 99999999999999n, nanos: 0 } }), Code.InvalidArgument, "end_time");
    const first = await a.listEntries({ pageSize: 1 });
    await refusedWith(a.listEntries({ pageSize: 1, pageToken: first.nextPageToken, action: "x" }), Code.InvalidArgument, "page_token");
    await refusedWith(auditUser(mesh, tenantA, ["audit.records.list"]).getEntry({ entryId: "aud_00" }), Code.PermissionDenied);
    await refusedWith(auditUser(mesh, tenantA, ["audit.records.read"]).listEntries({}), Code.PermissionDenied);
  });
});

describe("AuditLogService.ExportEntries", () => {
  test("entries recorded while an export is being read are not in it: it is exactly the tree of its checkpoint", async () => {
    const tenant = await newTenant(mesh);
    for (const name of ["One", "Two", "Three", "Four"]) await mesh.tenancyOps.updateTenant({ tenantId: tenant, displayName: `Export ${name}`, updateMask: { paths: ["display_name"] } });
    await waitForEntries(mesh, tenant, 5);
    const a = auditUser(mesh, tenant);
    const it = a.exportEntries({})[Symbol.asyncIterator]();
    const first = await it.next();
    assert.ok(!first.done && first.value.item.case === "checkpoint");
    const size = openCheckpoint(first.value.item.value, parseVerifierKey((await a.getVerifierKey({})).verifierKey)).size;
    // The trail grows while the export is read page by page (pages of two leaves here).
    for (const name of ["Five", "Six", "Seven"]) await mesh.tenancyOps.updateTenant({ tenantId: tenant, displayName: `Export ${name}`, updateMask: { paths: ["display_name"] } });
    await waitForEntries(mesh, tenant, size + 3);
    const indexes: number[] = [];
    for (let r = await it.next(); r.done !== true; r = await it.next()) indexes.push(r.value.item.case === "entry" ? Number(r.value.item.value.leafIndex) : -1);
    assert.ok(size >= 5, "the checkpoint spans several pages");
    assert.deepEqual(indexes, [...Array(size).keys()]);
  });

  test("a checkpoint first, then exactly size entries in leaf order with their leaves and proofs", async () => {
    const a = auditUser(mesh, tenantA);
    const { verifierKey } = await a.getVerifierKey({});
    const messages = [];
    for await (const m of a.exportEntries({ includeProofs: true })) messages.push(m);
    assert.equal(messages[0]!.item.case, "checkpoint");
    const cp = openCheckpoint(messages[0]!.item.value as string, parseVerifierKey(verifierKey));
    const entries = messages.slice(1).map((m) => (m.item.case === "entry" ? m.item.value : assert.fail("only entries after the checkpoint")));
    assert.equal(entries.length, cp.size);
    entries.forEach((e, i) => {
      assert.equal(Number(e.leafIndex), i);
      assert.equal(entryOfLeaf(e.leaf).entryId, e.entryId);
      assert.ok(verifyInclusion(i, cp.size, leafHash(e.leaf), e.proof, cp.rootHash));
    });
  });

  test("documented errors", async () => {
    const drain = async (it: AsyncIterable<unknown>): Promise<void> => {
      for await (const _ of it) void _;
    };
    await refusedWith(drain(auditOperator(mesh).exportEntries({ tenantId: "ten_nobodyhasthisone" })), Code.NotFound);
    await refusedWith(drain(auditOperator(mesh).exportEntries({})), Code.InvalidArgument);
    await refusedWith(drain(auditUser(mesh, tenantA, ["audit.records.list"]).exportEntries({})), Code.PermissionDenied);
  });
});
