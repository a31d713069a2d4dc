/**
 * Audit benchmarks (`BENCH_ONLY=audit npm run bench`, and in the full run):
 * tenancy, keys and audit each in its own process.
 *
 * - Ingestion: a backlog of tenancy actions (policy changes, committed
 *   through tenancy's outbox and relayed to JetStream while audit is
 *   paused) drained by audit's consumer into entries and the tree, durable,
 *   in events/s, alternating with a raw multi-row Postgres insert of the
 *   same rows into a plain table of the same shape; the median of the
 *   per-round ratios. Beside it, for reading it, the ratios to the same
 *   rows into a table with entries' indexes, and to every row audit wrote
 *   for those events (entries, leaves, tree nodes, inbox) with their
 *   indexes; and the CPU each event cost audit, keys, Postgres and NATS.
 *   Then a burst end to end, bounded by the producer.
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
import { readdirSync, readFileSync } from "node:fs";
import { CpuMeter, cpuMsOf } from "./cpu.js";
import { adminUrl, benchBootstrapToken, startBenchMesh, type BenchMesh } from "./mesh.js";

const rounds = Number(process.env["BENCH_AUDIT_ROUNDS"] ?? 3);
const burst = Number(process.env["BENCH_AUDIT_BURST"] ?? 400);
/** Events of each ingestion round's backlog: enough that the drain's rate, not its start, is measured. */
const backlog = Number(process.env["BENCH_AUDIT_BACKLOG"] ?? 3000);
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

/** Every Postgres backend (all roles: the services' pools and the server's own processes). */
async function allPostgresPids(db: pg.Client): Promise<number[]> {
  const r = await db.query<{ pid: number }>("select pid from pg_stat_activity");
  return r.rows.map((x) => x.pid);
}

/** The local nats-server's pid, if one runs here. */
function natsServerPid(): number | undefined {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, "utf8").trim() === "nats-server") return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
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
  const tenancySchema = mesh.schemaOf("tenancy");
  let serial = 0;
  const act = (n: number): Promise<void> =>
    pool(n, 32, (i) =>
      tenancy.updateSecurityPolicy({ tenantId: tenants[i % tenants.length]!, policy: create(SecurityPolicySchema, { passwordMinLength: 12 + (serial++ % 40) }), updateMask: { paths: ["password_min_length"] } }),
    );
  const recordedAll = (published: number) =>
    until(async () => (await policyChanges(db, schema, tenancySchema, tenants)).recorded >= published, 300_000, 10, async () => JSON.stringify(await policyChanges(db, schema, tenancySchema, tenants)));

  // A third, for reading both: every row audit wrote for those events (entries, leaves, tree nodes, inbox), into tables with their indexes.
  for (const t of ["leaves", "tree_nodes", "inbox"]) await db.query(`create table if not exists "${schema}".bench_raw_${t} (like "${schema}".${t} including all)`);

  // Baseline: rows audit stored, inserted raw (multi-row, 500 a statement) into a table of the same shape; the seconds it took.
  const rawInsert = async (rows: Record<string, unknown>[], table: string): Promise<number> => {
    if (rows.length === 0) return 0;
    const cols = Object.keys(rows[0]!);
    await db.query(`truncate "${schema}".${table}`);
    const t1 = performance.now();
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      const values = chunk.map((_, j) => `(${cols.map((__, k) => `$${j * cols.length + k + 1}`).join(", ")})`).join(", ");
      await db.query(`insert into "${schema}".${table} (${cols.join(", ")}) values ${values}`, chunk.flatMap((row) => cols.map((c) => row[c])));
    }
    return (performance.now() - t1) / 1000;
  };
  /** The leaves, the tree nodes they completed, and the trail consumer's inbox rows, of these entries. */
  const rowsBeside = async (entries: Record<string, unknown>[]): Promise<Record<string, Record<string, unknown>[]>> => {
    const entryIds = entries.map((e) => e["entry_id"]);
    const leaves = (await db.query(`select * from "${schema}".leaves where tenant_id = any($1) and entry_id = any($2)`, [tenants, entryIds])).rows as Record<string, unknown>[];
    const nodes = (
      await db.query(
        `select n.* from "${schema}".tree_nodes n
         join (select tenant_id, min(leaf_index) as lo, max(leaf_index) as hi from "${schema}".leaves where tenant_id = any($1) and entry_id = any($2) group by tenant_id) r on r.tenant_id = n.tenant_id
         where ((n.idx + 1) << n.level) - 1 between r.lo and r.hi`,
        [tenants, entryIds],
      )
    ).rows as Record<string, unknown>[];
    const inbox = (await db.query(`select * from "${schema}".inbox where consumer = 'audit-trail-tenancy' and event_id = any($1)`, [entries.map((e) => e["event_id"])])).rows as Record<string, unknown>[];
    return { bench_raw_leaves: leaves, bench_raw_tree_nodes: nodes, bench_raw_inbox: inbox };
  };

  // Ingestion: audit paused (SIGSTOP) while a backlog of actions is committed and relayed to JetStream, then
  // resumed: the rate at which it turns the backlog into durable entries in the tree, without waiting on the
  // producer. Alternating with the baseline, the same rows inserted raw.
  const auditPid = mesh.pids["audit"];
  if (auditPid === undefined) throw new Error("audit bench: audit runs in no process of its own");
  const ratios: number[] = [];
  const indexedRatios: number[] = [];
  const rates: number[] = [];
  const allRates: number[] = [];
  const allRatios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const before = (await policyChanges(db, schema, tenancySchema, tenants)).recorded;
    let published = 0;
    process.kill(auditPid, "SIGSTOP");
    try {
      await act(backlog);
      await until(async () => Number((await db.query<{ n: string }>(`select count(*) as n from "${tenancySchema}".outbox where sent_at is null`)).rows[0]!.n) === 0, 300_000, 50);
      published = (await policyChanges(db, schema, tenancySchema, tenants)).published;
    } finally {
      process.kill(auditPid, "SIGCONT");
    }
    // CPU of the drain: audit's process (its main thread apart), keys, every Postgres backend and NATS.
    const pgPids = await allPostgresPids(db);
    const natsPid = natsServerPid();
    const meter = new CpuMeter([auditPid, ...pgPids, ...(natsPid === undefined ? [] : [natsPid]), mesh.pids["keys"] ?? 0]);
    const mainBefore = cpuMsOf(auditPid, auditPid);
    const t0 = performance.now();
    // Polled cheaply (the recent entries of these tenants, through the primary key), so the bench's own reads
    // take little from the drain it measures.
    const since = new Date(Date.now() - 1000);
    const target = published - before;
    await until(
      async () => Number((await db.query<{ n: string }>(`select count(*) as n from "${schema}".entries where tenant_id = any($1) and recorded_at >= $2 and action = 'tenancy.tenant.policy_changed'`, [tenants, since])).rows[0]!.n) >= target,
      300_000,
      20,
    );
    const rate = target / ((performance.now() - t0) / 1000);
    const perEvent = (ms: number): string => `${((ms * 1000) / (published - before)).toFixed(0)} µs`;
    const cpu = `CPU an event: audit ${perEvent(meter.since([auditPid]))} (main thread ${perEvent(cpuMsOf(auditPid, auditPid) - mainBefore)}), keys ${perEvent(meter.since([mesh.pids["keys"] ?? 0]))}, Postgres ${perEvent(meter.since([...pgPids, ...(await allPostgresPids(db)).filter((p) => !pgPids.includes(p))]))}, NATS ${natsPid === undefined ? "?" : perEvent(meter.since([natsPid]))}`;
    const rows = (await db.query(`select * from "${schema}".entries where tenant_id = any($1) order by recorded_at desc, leaf_index desc limit $2`, [tenants, published - before])).rows as Record<string, unknown>[];
    const rawRate = rows.length / (await rawInsert(rows, "bench_raw_entries"));
    const indexedSeconds = await rawInsert(rows, "bench_raw_indexed");
    const indexedRate = rows.length / indexedSeconds;
    const beside = await rowsBeside(rows);
    let allSeconds = indexedSeconds;
    for (const [table, more] of Object.entries(beside)) allSeconds += await rawInsert(more, table);
    const allRate = rows.length / allSeconds;
    allRates.push(allRate);
    allRatios.push(rate / allRate);
    rates.push(rate);
    ratios.push(rate / rawRate);
    indexedRatios.push(rate / indexedRate);
    console.log(
      `    round ${r + 1}: audit drained ${published - before} events at ${rate.toFixed(0)} events/s; raw insert ${rawRate.toFixed(0)} rows/s (with entries' indexes ${indexedRate.toFixed(0)}; all ${Object.values(beside).reduce((n, b) => n + b.length, rows.length)} rows audit wrote, indexed, ${allRate.toFixed(0)} events' worth/s); ratio ${(rate / rawRate).toFixed(3)} (${(rate / indexedRate).toFixed(3)}; ${(rate / allRate).toFixed(3)})\n      ${cpu}`,
    );
  }
  console.log(
    `(audit) ingestion, a backlog into the tree         ${median(rates).toFixed(0)} events/s; median ratio ${median(ratios).toFixed(3)} of a raw multi-row insert of the same rows (aim >= 0.5); ${median(indexedRatios).toFixed(3)} of one into a table with entries' indexes; ${median(allRatios).toFixed(3)} of inserting every row audit wrote (entries, leaves, nodes, inbox) with their indexes`,
  );

  // End to end: a burst of actions while audit runs, until every one is in the tree (bounded by the producer).
  {
    const before = (await policyChanges(db, schema, tenancySchema, tenants)).recorded;
    const t0 = performance.now();
    await act(burst);
    const { published } = await policyChanges(db, schema, tenancySchema, tenants);
    await recordedAll(published);
    const rate = (published - before) / ((performance.now() - t0) / 1000);
    console.log(`(audit) end to end, ${published - before} actions to entries in the tree   ${rate.toFixed(0)} events/s (bounded by tenancy's RPCs and relay)`);
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
