/**
 * Audit benchmarks (`BENCH_ONLY=audit npm run bench`, and in the full run):
 * tenancy, keys and audit each in its own process.
 *
 * - Ingestion: a burst of tenancy actions (policy changes, through
 *   tenancy's outbox, JetStream and audit's consumer into entries and the
 *   tree, durable) in events/s, alternating with a raw multi-row Postgres
 *   insert of the same rows into a plain table of the same shape; the median
 *   of the per-round ratios.
 * - Lag from an action (the RPC's start) to its entry being queryable, p50/p99.
 * - ListEntries, filtered, one page of 50 over a tenant of 1 000 000 entries
 *   (loaded in bulk with SQL), p50/p99.
 * - GetInclusionProof at a tree of 1 000 000 leaves (nodes computed with
 *   libs/tlog and loaded in bulk), p50/p99, one proof verified.
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { toBinary } from "@bufbuild/protobuf";
import { AuditEntrySchema, AuditLogService, Region, SecurityPolicySchema, TenancyService } from "@bulwark/contracts";
import { MemoryNodeStore, appendLeaves, leafHash, verifyInclusion } from "@bulwark/tlog";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { adminUrl, benchBootstrapToken, startBenchMesh, type BenchMesh } from "./mesh.js";

const rounds = Number(process.env["BENCH_AUDIT_ROUNDS"] ?? 3);
const burst = Number(process.env["BENCH_AUDIT_BURST"] ?? 400);
const big = Number(process.env["BENCH_AUDIT_ENTRIES"] ?? 1_000_000);

const bearer = (token: string) => [(next: (r: { header: Headers }) => unknown) => (req: { header: Headers }) => (req.header.set("authorization", `Bearer ${token}`), next(req))];

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}
const median = (xs: number[]): number => pct(xs, 50);

async function count(db: pg.Client, schema: string, tenantIds: string[]): Promise<number> {
  const r = await db.query<{ n: string }>(`select count(*) as n from "${schema}".entries where tenant_id = any($1)`, [tenantIds]);
  return Number(r.rows[0]!.n);
}

/**
 * The policy changes recorded by audit, and those tenancy published (its
 * outbox rows): an update that changes nothing (two concurrent updates of a
 * tenant can land in an order that repeats a value) publishes no event, so
 * the target is what was published, not the number of calls.
 */
async function policyChanges(db: pg.Client, schema: string, tenancySchema: string, tenantIds: string[]): Promise<{ recorded: number; published: number }> {
  const r = await db.query<{ recorded: string; published: string }>(
    `select (select count(*) from "${schema}".entries where tenant_id = any($1) and action = 'tenancy.tenant.policy_changed') as recorded,
            (select count(*) from "${tenancySchema}".outbox where tenant_id = any($1) and subject like '%.tenancy.tenant.policy_changed') as published`,
    [tenantIds],
  );
  return { recorded: Number(r.rows[0]!.recorded), published: Number(r.rows[0]!.published) };
}

async function until(fn: () => Promise<boolean>, timeoutMs: number, everyMs = 10, what?: () => Promise<string>): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`audit bench: timed out${what === undefined ? "" : ` (${await what()})`}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function ingestion(mesh: BenchMesh, db: pg.Client, tenancy: Client<typeof TenancyService>, schema: string): Promise<void> {
  const tenants: string[] = [];
  for (let i = 0; i < 8; i++) {
    const { tenant } = await tenancy.createTenant({ slug: `bench-audit-${Date.now().toString(36)}-${i}`, displayName: "Bench audit", region: Region.EU });
    tenants.push(tenant!.id);
  }
  await db.query(`create table if not exists "${schema}".bench_raw_entries (like "${schema}".entries including defaults)`);
  // A second baseline, for reading the first: the same rows into a table with entries' keys and indexes.
  await db.query(`create table if not exists "${schema}".bench_raw_indexed (like "${schema}".entries including all)`);
  const ratios: number[] = [];
  const rawRates: number[] = [];
  const indexedRatios: number[] = [];
  const indexedRates: number[] = [];
  const tenancySchema = mesh.schemaOf("tenancy");
  let serial = 0;
  for (let r = 0; r < rounds; r++) {
    // Subject: a burst of actions, until every one is an entry in its tenant's tree.
    const before = (await policyChanges(db, schema, tenancySchema, tenants)).recorded;
    const t0 = performance.now();
    await pool(burst, 32, (i) =>
      tenancy.updateSecurityPolicy({ tenantId: tenants[i % tenants.length]!, policy: create(SecurityPolicySchema, { passwordMinLength: 12 + (serial++ % 40) }), updateMask: { paths: ["password_min_length"] } }),
    );
    const { published } = await policyChanges(db, schema, tenancySchema, tenants);
    await until(async () => (await policyChanges(db, schema, tenancySchema, tenants)).recorded >= published, 120_000, 10, async () => JSON.stringify(await policyChanges(db, schema, tenancySchema, tenants)));
    const subjectRate = (published - before) / ((performance.now() - t0) / 1000);
    // Baseline: the same rows, inserted raw (multi-row, 500 a statement).
    const rows = (await db.query(`select * from "${schema}".entries where tenant_id = any($1) order by recorded_at desc limit $2`, [tenants, burst])).rows as Record<string, unknown>[];
    const cols = Object.keys(rows[0]!);
    const rawInsert = async (table: string): Promise<number> => {
      await db.query(`truncate "${schema}".${table}`);
      const t1 = performance.now();
      for (let i = 0; i < rows.length; i += 500) {
        const chunk = rows.slice(i, i + 500);
        const values = chunk.map((_, j) => `(${cols.map((__, k) => `$${j * cols.length + k + 1}`).join(", ")})`).join(", ");
        await db.query(`insert into "${schema}".${table} (${cols.join(", ")}) values ${values}`, chunk.flatMap((row) => cols.map((c) => row[c])));
      }
      return rows.length / ((performance.now() - t1) / 1000);
    };
    const rawRate = await rawInsert("bench_raw_entries");
    const indexedRate = await rawInsert("bench_raw_indexed");
    ratios.push(subjectRate / rawRate);
    rawRates.push(rawRate);
    indexedRatios.push(subjectRate / indexedRate);
    indexedRates.push(indexedRate);
    console.log(`    round ${r + 1}: audit ${subjectRate.toFixed(0)} events/s, raw insert ${rawRate.toFixed(0)} rows/s (with entries' indexes ${indexedRate.toFixed(0)}), ratio ${(subjectRate / rawRate).toFixed(3)}`);
  }
  console.log(`(audit) ingestion, action to entry in the tree   median ratio ${median(ratios).toFixed(3)} of a raw multi-row insert (aim >= 0.5); ${median(indexedRatios).toFixed(3)} of one into a table with entries' indexes`);

  // Catch-up: audit paused (SIGSTOP) while a burst is committed and relayed, then resumed:
  // how fast it drains a backlog, without waiting on the producer.
  const auditPid = mesh.pids["audit"];
  if (auditPid !== undefined) {
    const before = (await policyChanges(db, schema, tenancySchema, tenants)).recorded;
    let published = 0;
    process.kill(auditPid, "SIGSTOP");
    try {
      await pool(burst, 32, (i) =>
        tenancy.updateSecurityPolicy({ tenantId: tenants[i % tenants.length]!, policy: create(SecurityPolicySchema, { passwordMinLength: 12 + (serial++ % 40) }), updateMask: { paths: ["password_min_length"] } }),
      );
      await until(async () => Number((await db.query<{ n: string }>(`select count(*) as n from "${tenancySchema}".outbox where sent_at is null`)).rows[0]!.n) === 0, 120_000, 50);
      published = (await policyChanges(db, schema, tenancySchema, tenants)).published;
    } finally {
      process.kill(auditPid, "SIGCONT");
    }
    const t0 = performance.now();
    await until(async () => (await policyChanges(db, schema, tenancySchema, tenants)).recorded >= published, 120_000, 10, async () => JSON.stringify(await policyChanges(db, schema, tenancySchema, tenants)));
    const rate = (published - before) / ((performance.now() - t0) / 1000);
    console.log(`(audit) catch-up, a backlog of ${published - before} events drained   ${rate.toFixed(0)} events/s, ratio ${(rate / median(rawRates)).toFixed(3)} of the raw inserts above (${(rate / median(indexedRates)).toFixed(3)} of the indexed ones)`);
  }

  // Lag: one action at a time, until its entry is queryable.
  const lags: number[] = [];
  for (let i = 0; i < 60; i++) {
    const before = await count(db, schema, [tenants[0]!]);
    const t = performance.now();
    await tenancy.updateSecurityPolicy({ tenantId: tenants[0]!, policy: create(SecurityPolicySchema, { passwordMinLength: 12 + (i % 40) }), updateMask: { paths: ["password_min_length"] } });
    await until(async () => (await count(db, schema, [tenants[0]!])) > before, 30_000, 2);
    lags.push(performance.now() - t);
  }
  console.log(`(audit) lag, action to queryable entry            p50 ${median(lags).toFixed(1)} ms   p99 ${pct(lags, 99).toFixed(1)} ms (aim p99 < 1000 ms)`);
}

async function bigLog(db: pg.Client, audit: Client<typeof AuditLogService>, schema: string): Promise<void> {
  const tenantId = `ten_bench1m${Date.now().toString(36)}`;
  const t0 = performance.now();
  // Entries over the last 20 days (this month's and last month's partitions exist), one action in ten a sign-in.
  await db.query(
    `insert into "${schema}".entries (tenant_id, leaf_index, entry_id, event_id, recorded_at, occurred_at, actor_type, actor_id, action, resource_type, resource_id, outcome, leaf)
     select $1, i, 'aud_b' || i, 'evt_b' || i, now() - ((($2 - i)::float8 / $2) * interval '20 days'), now() - ((($2 - i)::float8 / $2) * interval '20 days'), 1,
            'usr_' || (i % 1000), case when i % 10 = 0 then 'identity.user.signed_in' else 'tenancy.tenant.policy_changed' end, 'user', 'usr_' || (i % 1000), 1, $3
     from generate_series(0, $2 - 1) as i`,
    // One valid leaf for every row: the page decodes it; its content does not matter to the timing.
    [tenantId, big, Buffer.from(toBinary(AuditEntrySchema, create(AuditEntrySchema, { entryId: "aud_bench", tenantId, action: "identity.user.signed_in" })))],
  );
  // Leaves and every complete subtree, computed with libs/tlog.
  const store = new MemoryNodeStore();
  const leaves = Array.from({ length: big }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
  const appended = await appendLeaves(store, 0, leaves);
  await db.query(
    `insert into "${schema}".leaves (tenant_id, leaf_index, entry_id, leaf_hash, recorded_at) select $1, i, 'aud_b' || i, decode(md5(i::text), 'hex'), now() from generate_series(0, $2 - 1) as i`,
    [tenantId, big],
  );
  for (let i = 0; i < appended.nodes.length; i += 10_000) {
    const chunk = appended.nodes.slice(i, i + 10_000);
    await db.query(
      `insert into "${schema}".tree_nodes (tenant_id, level, idx, hash) select $1, l, x, h from unnest($2::smallint[], $3::bigint[], $4::bytea[]) as t(l, x, h)`,
      [tenantId, chunk.map((n) => n.id.level), chunk.map((n) => n.id.index), chunk.map((n) => Buffer.from(n.hash))],
    );
  }
  await db.query(`analyze "${schema}".entries`);
  await db.query(`analyze "${schema}".tree_nodes`);
  console.log(`    loaded ${big} entries and ${appended.nodes.length} tree nodes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const page: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    const res = await audit.listEntries({ tenantId, pageSize: 50, action: "identity.user.signed_in", actorId: i % 2 === 0 ? "" : `usr_${(i * 10) % 1000}` });
    page.push(performance.now() - t);
    if (res.entries.length === 0) throw new Error("audit bench: an empty page");
  }
  console.log(`(audit) ListEntries, filtered page of 50, 1M      p50 ${median(page).toFixed(2)} ms   p99 ${pct(page, 99).toFixed(2)} ms (aim p99 < 50 ms)`);

  const root = appended.root;
  const proofs: number[] = [];
  for (let i = 0; i < 200; i++) {
    const index = Math.floor(Math.random() * big);
    const t = performance.now();
    const { hashes } = await audit.getInclusionProof({ tenantId, leaf: { case: "leafIndex", value: BigInt(index) }, treeSize: BigInt(big) });
    proofs.push(performance.now() - t);
    if (i === 0 && !verifyInclusion(index, big, leaves[index]!, hashes, root)) throw new Error("audit bench: the proof does not verify");
  }
  console.log(`(audit) GetInclusionProof at 1M leaves           p50 ${median(proofs).toFixed(2)} ms   p99 ${pct(proofs, 99).toFixed(2)} ms`);
}

/** The audit rows, on a mesh of their own. */
export async function auditBenchmarks(): Promise<void> {
  const mesh = await startBenchMesh({ audit: true, env: { AUDIT_LOG_NAME: "bench.audit", AUDIT_CHECKPOINT_INTERVAL_MS: "3600000", KEYS_API_KEY_PEPPER: randomBytes(32).toString("base64") } });
  const db = new pg.Client({ connectionString: adminUrl });
  await db.connect();
  try {
    const schema = mesh.auditSchema!;
    const tenancy = createClient(TenancyService, createGrpcTransport({ baseUrl: mesh.tenancyUrl, interceptors: bearer(benchBootstrapToken) as never }));
    const audit = createClient(AuditLogService, createGrpcTransport({ baseUrl: `http://${mesh.auditAddress!}`, interceptors: bearer(benchBootstrapToken) as never }));
    if (process.env["BENCH_AUDIT_SKIP_INGESTION"] !== "1") await ingestion(mesh, db, tenancy, schema);
    if (process.env["BENCH_AUDIT_SKIP_BIGLOG"] !== "1") await bigLog(db, audit, schema);
  } finally {
    await db.end();
    await mesh.close();
  }
}
