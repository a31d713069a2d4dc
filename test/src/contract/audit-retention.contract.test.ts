// Audit retention: the scheduled job removes each tenant's entries older
// than its policy's audit_retention (default 2 years) through the retention
// role, dropping a whole monthly partition when every tenant's entries in it
// expired; leaf hashes, tree nodes and checkpoints stay, so the remaining
// entries still prove their inclusion in every signed size; the run is
// recorded in the tenant's own trail.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { SecurityPolicySchema, type AuditLogService } from "@bulwark/contracts";
import type { Client } from "@connectrpc/connect";
import { leafHash, openCheckpoint, parseVerifierKey, verifyInclusion } from "@bulwark/tlog";
import { adminUrl, eventually, testDatabase } from "../support/harness.js";
import { auditUser, newTenant, startAuditMesh, waitForEntries, type AuditMesh } from "./support-audit.js";

let mesh: AuditMesh;
const day = 24 * 3600 * 1000;

before(async () => {
  // The job runs every second here (a daily cron otherwise).
  process.env["AUDIT_RETENTION_EVERY_MS"] = "1000";
  mesh = await startAuditMesh();
});
after(async () => {
  delete process.env["AUDIT_RETENTION_EVERY_MS"];
  await mesh?.stop();
});

const schema = (): string => `"${mesh.audit.config.DATABASE_SCHEMA}"`;

async function superuser<R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], bypassTriggers = false): Promise<R[]> {
  const url = new URL(adminUrl);
  url.pathname = `/${testDatabase}`;
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  try {
    if (bypassTriggers) await c.query("set session_replication_role = replica");
    return (await c.query<R>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** Moves entries (and their leaves) back in time, as if recorded `daysAgo` days ago. */
async function backdate(tenantId: string, indexes: number[], daysAgo: number): Promise<void> {
  const at = new Date(Date.now() - daysAgo * day);
  await superuser(`select ${schema()}.audit_ensure_partition($1)`, [at]);
  await superuser(`update ${schema()}.entries set recorded_at = $3 where tenant_id = $1 and leaf_index = any($2)`, [tenantId, indexes, at], true);
  await superuser(`update ${schema()}.leaves set recorded_at = $3 where tenant_id = $1 and leaf_index = any($2)`, [tenantId, indexes, at], true);
}

async function trail(tenantId: string, changes: number): Promise<number> {
  for (let i = 0; i < changes; i++) {
    await mesh.tenancyOps.updateSecurityPolicy({ tenantId, policy: create(SecurityPolicySchema, { passwordMinLength: 13 + i }), updateMask: { paths: ["password_min_length"] } });
  }
  await waitForEntries(mesh, tenantId, changes + 1);
  const [row] = await superuser<{ n: string }>(`select count(*) as n from ${schema()}.leaves where tenant_id = $1`, [tenantId]);
  return Number(row!.n);
}

async function indexesOf(tenantId: string): Promise<number[]> {
  return (await superuser<{ i: string }>(`select leaf_index as i from ${schema()}.entries where tenant_id = $1 order by leaf_index`, [tenantId])).map((r) => Number(r.i));
}

async function proveAll(client: Client<typeof AuditLogService>, tenantId: string, size: number, indexes: number[]): Promise<void> {
  const { verifierKey } = await client.getVerifierKey({});
  const { checkpoint } = await client.getCheckpoint({ refresh: true });
  const cp = openCheckpoint(checkpoint, parseVerifierKey(verifierKey));
  assert.ok(cp.size >= size);
  for (const i of indexes) {
    const [row] = await superuser<{ leaf_hash: Buffer }>(`select leaf_hash from ${schema()}.leaves where tenant_id = $1 and leaf_index = $2`, [tenantId, i]);
    const { hashes } = await client.getInclusionProof({ leaf: { case: "leafIndex", value: BigInt(i) }, treeSize: BigInt(cp.size) });
    assert.ok(verifyInclusion(i, cp.size, new Uint8Array(row!.leaf_hash), hashes, cp.rootHash), `entry ${i} proves its inclusion after retention`);
  }
  void leafHash;
}

test("expired entries go (a whole partition where it can), the rest still prove inclusion, and the run is recorded", async () => {
  // Tenant A keeps 90 days; tenant B the default 2 years.
  const a = await newTenant(mesh);
  await mesh.tenancyOps.updateSecurityPolicy({ tenantId: a, policy: create(SecurityPolicySchema, { auditRetention: durationFromMs(90 * day) }), updateMask: { paths: ["audit_retention"] } });
  const sizeA = await trail(a, 5);
  const b = await newTenant(mesh);
  const sizeB = await trail(b, 3);

  const clientA = auditUser(mesh, a);
  const before = await clientA.getCheckpoint({ refresh: true });
  // A: entries 0-1 recorded 14 months ago (a month only A has entries in), 2-3 100 days ago (a month B shares).
  await backdate(a, [0, 1], 425);
  await backdate(a, [2, 3], 100);
  await backdate(b, [0, 1], 100);
  const oldMonth = new Date(Date.now() - 425 * day);
  const oldPartition = `entries_y${oldMonth.getUTCFullYear()}m${String(oldMonth.getUTCMonth() + 1).padStart(2, "0")}`;
  assert.equal((await superuser<{ r: string | null }>(`select to_regclass($1) as r`, [`${mesh.audit.config.DATABASE_SCHEMA}.${oldPartition}`]))[0]?.r !== null, true);

  // The job removes A's four expired entries, and records the run in A's trail.
  await eventually(async () => (await indexesOf(a)).filter((i) => i < 4).length === 0, 20_000);
  await waitForEntries(mesh, a, 1, "audit.retention.applied");
  const remaining = await indexesOf(a);
  assert.deepEqual(
    remaining.filter((i) => i < sizeA),
    Array.from({ length: sizeA - 4 }, (_, k) => k + 4),
  );
  // The month only A had entries in went whole.
  assert.equal((await superuser<{ r: string | null }>(`select to_regclass($1) as r`, [`${mesh.audit.config.DATABASE_SCHEMA}.${oldPartition}`]))[0]?.r, null);
  // B keeps everything (2 years).
  assert.deepEqual((await indexesOf(b)).slice(0, sizeB), Array.from({ length: sizeB }, (_, k) => k));

  // Leaf hashes, tree nodes and checkpoints stay: every remaining entry proves inclusion, at the old size and now.
  const [leaves] = await superuser<{ n: string }>(`select count(*) as n from ${schema()}.leaves where tenant_id = $1`, [a]);
  assert.ok(Number(leaves!.n) >= sizeA + 1);
  const [cps] = await superuser<{ n: string }>(`select count(*) as n from ${schema()}.checkpoints where tenant_id = $1 and note = $2`, [a, before.checkpoint]);
  assert.equal(Number(cps!.n), 1, "the checkpoint signed before retention is kept");
  await proveAll(clientA, a, sizeA, remaining);

  // The recorded run says how many and up to which leaf.
  const [rec] = await superuser<{ leaf_index: string }>(`select leaf_index from ${schema()}.entries where tenant_id = $1 and action = 'audit.retention.applied' order by leaf_index limit 1`, [a]);
  assert.ok(rec !== undefined);
  const entry = await clientA.getEntry({ entryId: (await superuser<{ entry_id: string }>(`select entry_id from ${schema()}.entries where tenant_id = $1 and leaf_index = $2`, [a, rec.leaf_index]))[0]!.entry_id });
  const fields = new Map(entry.entry?.changedFields.map((f) => [f.name, f.newValue?.kind.case === "plain" ? f.newValue.kind.value : ""]));
  assert.equal(fields.get("removed_count"), "4", JSON.stringify([...fields]));
  assert.equal(fields.get("last_expired_index"), "3");

  // An export verifies offline: the removed leaves are covered by the recorded run, every kept entry proves inclusion.
  const dir = mkdtempSync(join(tmpdir(), "bulwark-retention-"));
  try {
    const cli = join(fileURLToPath(import.meta.url), "../../../../services/audit/dist/src/cli.js");
    const env = { ...process.env, BULWARK_TOKEN: mesh.audit.issueToken({ id: "usr_ret", kind: "user", tenantId: a, permissions: new Set(["audit.records.export", "audit.records.verify"]) }), BULWARK_AUDIT_URL: mesh.audit.baseUrl };
    const file = join(dir, "a.ndjson");
    await promisify(execFile)(process.execPath, [cli, "export", "--output", file], { env });
    writeFileSync(join(dir, "vkey"), (await clientA.getVerifierKey({})).verifierKey);
    const v = await promisify(execFile)(process.execPath, [cli, "verify", file, "--verifier-key", `@${join(dir, "vkey")}`], { env });
    assert.match(v.stdout, /4 entries expired under the retention policy/);
    assert.match(v.stdout, /^OK/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  // Nothing else of B's or A's goes on later runs.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await indexesOf(a)).filter((i) => i < 4).length, 0);
  assert.equal((await indexesOf(b)).length >= sizeB, true);
});
