// `bulwark-audit export` and `bulwark-audit verify`, as a user runs them:
// the export streams ExportEntries into NDJSON (or CSV) with a progress bar;
// the offline verifier accepts an untouched export, checks consistency with
// a checkpoint kept earlier, and names the first entry that does not match
// when a superuser edits, deletes or reorders rows in Postgres.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AuditEntrySchema, SecurityPolicySchema } from "@bulwark/contracts";
import { adminUrl, testDatabase } from "../support/harness.js";
import { auditPermissions, newTenant, startAuditMesh, waitForEntries, type AuditMesh } from "./support-audit.js";

const run = promisify(execFile);
const cli = join(fileURLToPath(import.meta.url), "../../../../services/audit/dist/src/cli.js");
const dir = mkdtempSync(join(tmpdir(), "bulwark-audit-cli-"));
let mesh: AuditMesh;

before(async () => {
  mesh = await startAuditMesh();
});
after(async () => {
  await mesh?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function bulwarkAudit(args: string[], token?: string): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [cli, ...args], { env: { ...process.env, BULWARK_TOKEN: token ?? "", BULWARK_AUDIT_URL: mesh.audit.baseUrl }, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === "number" ? err.code : -1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

/** A tenant with `n` policy changes recorded (its creation goes to the platform's log), and a user token that may export. */
async function tenantWithTrail(n: number): Promise<{ tenantId: string; token: string; size: number }> {
  const tenantId = await newTenant(mesh);
  for (let i = 0; i < n; i++) {
    await mesh.tenancyOps.updateSecurityPolicy({
      tenantId,
      policy: create(SecurityPolicySchema, { passwordMinLength: 12 + i }),
      updateMask: { paths: ["password_min_length"] },
    });
  }
  await waitForEntries(mesh, tenantId, n);
  const token = mesh.audit.issueToken({ id: "usr_cli_auditor", kind: "user", tenantId, permissions: new Set(auditPermissions) });
  const [row] = await superuser<{ n: string }>(`select count(*) as n from ${schema()}.entries where tenant_id = $1`, [tenantId]);
  return { tenantId, token, size: Number(row!.n) };
}

const schema = (): string => `"${mesh.audit.config.DATABASE_SCHEMA}"`;

/**
 * Runs statements as the superuser with triggers off (session_replication_role
 * = replica), as someone with the database's keys would to rewrite history.
 */
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

async function exportTo(file: string, token: string, extra: string[] = []): Promise<CliResult> {
  const r = await bulwarkAudit(["export", "--output", file, ...extra], token);
  assert.equal(r.code, 0, r.stderr);
  return r;
}

async function verifierKeyFile(token: string): Promise<string> {
  const r = await bulwarkAudit(["verifier-key"], token);
  assert.equal(r.code, 0, r.stderr);
  const file = join(dir, `vkey-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, r.stdout);
  return file;
}

test("an untouched export verifies offline, and is consistent with a checkpoint kept earlier", async () => {
  const t = await tenantWithTrail(3);
  const vkey = await verifierKeyFile(t.token);
  const kept = await bulwarkAudit(["checkpoint", "--refresh"], t.token);
  assert.equal(kept.code, 0, kept.stderr);
  const keptFile = join(dir, "kept-checkpoint");
  writeFileSync(keptFile, kept.stdout);

  // The trail grows after the checkpoint was kept.
  await mesh.tenancyOps.updateSecurityPolicy({ tenantId: t.tenantId, policy: create(SecurityPolicySchema, { passwordMinLength: 30 }), updateMask: { paths: ["password_min_length"] } });
  await waitForEntries(mesh, t.tenantId, t.size + 1);

  const file = join(dir, "good.ndjson");
  const exported = await exportTo(file, t.token);
  assert.match(exported.stderr, /entries exported/);
  const lines = readFileSync(file, "utf8").trim().split("\n");
  assert.ok("checkpoint" in JSON.parse(lines[0]!));
  assert.equal(lines.length, t.size + 2, "the checkpoint line and one line per entry");

  const ok = await bulwarkAudit(["verify", file, "--verifier-key", `@${vkey}`, "--previous-checkpoint", keptFile]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /consistent with the earlier checkpoint/);
  assert.match(ok.stdout, /^OK/m);

  const json = await bulwarkAudit(["verify", file, "--verifier-key", readFileSync(vkey, "utf8").trim(), "--json"]);
  const report = JSON.parse(json.stdout) as { ok: boolean; entries: number; size: number };
  assert.deepEqual([report.ok, report.entries, report.size], [true, t.size + 1, t.size + 1]);

  // Another log's key does not verify it; a checkpoint of another log is not "earlier".
  const other = await tenantWithTrail(1);
  const otherKey = await verifierKeyFile(other.token);
  const wrongKey = await bulwarkAudit(["verify", file, "--verifier-key", `@${otherKey}`]);
  assert.equal(wrongKey.code, 1);
  assert.match(wrongKey.stdout, /PROBLEM: checkpoint/);
});

test("CSV export: a header and one row per entry, for people", async () => {
  const t = await tenantWithTrail(3);
  const file = join(dir, "trail.csv");
  await exportTo(file, t.token, ["--format", "csv"]);
  const rows = readFileSync(file, "utf8").trim().split("\r\n");
  assert.match(rows[0]!, /^leaf_index,entry_id,recorded_at/);
  assert.equal(rows.length, t.size + 1);
  assert.ok(rows.some((r) => r.includes('"tenancy.tenant.policy_changed"')));
});

test("a row edited in Postgres is named by the verifier", async () => {
  const t = await tenantWithTrail(4);
  const vkey = await verifierKeyFile(t.token);
  const [row] = await superuser<{ leaf: Buffer }>(`select leaf from ${schema()}.entries where tenant_id = $1 and leaf_index = 2`, [t.tenantId]);
  const entry = fromBinary(AuditEntrySchema, row!.leaf);
  entry.action = "tenancy.tenant.nothing_happened";
  await superuser(`update ${schema()}.entries set leaf = $2, action = $3 where tenant_id = $1 and leaf_index = 2`, [t.tenantId, Buffer.from(toBinary(AuditEntrySchema, entry)), entry.action], true);

  const file = join(dir, "edited.ndjson");
  await exportTo(file, t.token);
  const r = await bulwarkAudit(["verify", file, "--verifier-key", `@${vkey}`]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, new RegExp(`FIRST MISMATCH: entry 2 \\(${entry.entryId}\\)`));
  assert.match(r.stdout, /changed or moved after it was recorded/);
  assert.match(r.stdout, /^FAILED/m);
});

test("a row deleted in Postgres is named by the verifier", async () => {
  const t = await tenantWithTrail(4);
  const vkey = await verifierKeyFile(t.token);
  await superuser(`delete from ${schema()}.entries where tenant_id = $1 and leaf_index = 1`, [t.tenantId], true);
  await superuser(`delete from ${schema()}.leaves where tenant_id = $1 and leaf_index = 1`, [t.tenantId], true);

  const file = join(dir, "deleted.ndjson");
  await exportTo(file, t.token);
  const r = await bulwarkAudit(["verify", file, "--verifier-key", `@${vkey}`]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FIRST MISMATCH: entry 1 .*missing \(deleted\)/);
});

test("two rows reordered in Postgres are named by the verifier", async () => {
  const t = await tenantWithTrail(4);
  const vkey = await verifierKeyFile(t.token);
  const swap = async (table: string): Promise<void> => {
    await superuser(`update ${schema()}.${table} set leaf_index = -1 where tenant_id = $1 and leaf_index = 1`, [t.tenantId], true);
    await superuser(`update ${schema()}.${table} set leaf_index = 1 where tenant_id = $1 and leaf_index = 3`, [t.tenantId], true);
    await superuser(`update ${schema()}.${table} set leaf_index = 3 where tenant_id = $1 and leaf_index = -1`, [t.tenantId], true);
  };
  await swap("entries");
  await swap("leaves");

  const file = join(dir, "reordered.ndjson");
  await exportTo(file, t.token);
  const r = await bulwarkAudit(["verify", file, "--verifier-key", `@${vkey}`]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /FIRST MISMATCH: entry 1 /);
  assert.match(r.stdout, /also entry 3 /);
});

test("usage errors exit 2; a refused credential exits 1", async () => {
  assert.equal((await bulwarkAudit(["verify"])).code, 2);
  assert.equal((await bulwarkAudit(["frobnicate"])).code, 2);
  assert.equal((await bulwarkAudit(["export", "--format", "xml"], "x")).code, 2);
  const refused = await bulwarkAudit(["export", "--output", join(dir, "x.ndjson")], "not-a-valid-token");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /UNAUTHENTICATED|Unauthenticated/);
});
