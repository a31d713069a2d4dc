/**
 * Fault cases beside the scale-out suite (`npm run test:scale`), on a
 * Postgres and a NATS server of the suite's own (initdb/pg_ctl on a free
 * port, a private nats-server), so restarting them disturbs nobody else's
 * tests: every service that exists runs as a process against them, under
 * a bounded load of real traffic.
 * - Postgres restarted under load: the pools recover, calls fail only
 *   UNAVAILABLE while it is away, nothing committed is lost.
 * - NATS down for 30 s: the outboxes back up, health goes NOT_SERVING and
 *   comes back, the backlog drains after, every event is handled once.
 * - Audit down for a minute (every replica SIGKILLed): nothing else
 *   notices, and once it is back every event committed meanwhile is
 *   recorded exactly once and every tenant's tree stays consistent.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { health } from "@bulwark/contracts";
import pg from "pg";
import { NatsCluster } from "../support/nats-cluster.js";
import { PrivatePostgres } from "../support/private-postgres.js";
import { ProcessMesh } from "../support/process-mesh.js";
import { AuditWatch, checkAuditEntries } from "./audit-trail.js";
import { checkCommittedChanges, checkDelivery, followStreams, outboxBacklog, outboxEvents, Recorder, setUpTenants, logsOf, sleep, startLoad, type Follower, type LoadTenant } from "./load.js";

const log = (line: string): void => void process.stdout.write(`[faults] ${line}\n`);

/** How long audit stays down in its fault case. */
const auditDownMs = 60_000;

describe("faults: Postgres, NATS and audit taken away under load", { timeout: 420_000 }, () => {
  let postgres: PrivatePostgres | undefined;
  let nats: NatsCluster | undefined;
  let mesh: ProcessMesh | undefined;
  let follow: { followers: Follower[]; stop(): Promise<void> } | undefined;
  let tenants: LoadTenant[] = [];
  let adminUrl = "";

  before(async () => {
    postgres = await PrivatePostgres.start();
    adminUrl = postgres.url("bulwark");
    nats = await NatsCluster.start(1);
    mesh = await ProcessMesh.start({ replicas: 1, natsUrl: nats.url, adminUrl });
    log(`private Postgres on ${postgres.port}, NATS on ${nats.nodes[0]!.port}; services: ${mesh.services.join(", ")}`);
    follow = await followStreams(mesh, adminUrl, nats.url);
    tenants = await setUpTenants(mesh, 2);
  });

  after(async () => {
    await follow?.stop().catch(() => undefined);
    await mesh?.stop({ keepSchemas: true });
    await nats?.stop();
    postgres?.stop();
  });

  /** Waits until every outbox is empty and every follower has caught up; returns the problems left. */
  async function drained(timeoutMs = 60_000): Promise<{ problems: string[]; events: number; ms: number }> {
    const start = Date.now();
    for (;;) {
      const d = await checkDelivery(mesh!, adminUrl, follow!.followers);
      if (d.problems.length === 0 || Date.now() - start > timeoutMs) return { ...d, ms: Date.now() - start };
      await sleep(500);
    }
  }

  test("Postgres restarted under load: the pools recover, nothing is lost, nothing answers INTERNAL", async () => {
    const rec = new Recorder();
    const load = startLoad(mesh!, tenants, rec, { workers: 3, pauseMs: 20 });
    await sleep(4_000);
    const at = Date.now();
    postgres!.restart();
    const back = Date.now();
    log(`Postgres restarted (fast shutdown) in ${back - at} ms`);
    await sleep(8_000);
    await load.stop();
    const d = await drained();
    const failed = rec.calls.filter((c) => c.code !== "OK");
    const lastFailure = failed.length === 0 ? at : Math.max(...failed.map((c) => c.at + c.ms));
    log(`calls ${rec.calls.length} ${JSON.stringify(rec.codes())}; failures until ${lastFailure - at} ms after the restart began; ${d.events} events, drained ${d.ms} ms after the load`);
    assert.deepEqual(rec.bad, [], `no INTERNAL or UNKNOWN\n${logsOf(mesh!, rec.bad)}`);
    assert.deepEqual(failed.filter((c) => c.code !== "Unavailable").map((c) => `${c.op}: ${c.code}`), [], "a call fails only UNAVAILABLE while Postgres is away");
    assert.ok(lastFailure - back < 5_000, `the pools recovered within 5 s of Postgres being back (last failure ${lastFailure - back} ms after)`);
    assert.ok(rec.calls.filter((c) => c.at > back + 5_000).every((c) => c.code === "OK"), "every call after recovery succeeds");
    assert.deepEqual(d.problems, []);
    assert.deepEqual(await checkCommittedChanges(mesh!, adminUrl, rec), []);
  });

  test("NATS down for 30 s: outboxes back up, health goes NOT_SERVING and back, everything drains after", async () => {
    const m = mesh!;
    const rec = new Recorder();
    const healthOf = m.services.flatMap((s) => m.replicas(s).map((r) => ({ name: `${s}#${r.index}`, client: createClient(health.Health, createGrpcTransport({ baseUrl: r.url })) })));
    const seen = new Map<string, Set<string>>(healthOf.map((h) => [h.name, new Set<string>()]));
    let polling = true;
    const statuses: { at: number; name: string; status: string }[] = [];
    const poller = (async () => {
      while (polling) {
        for (const h of healthOf) {
          const status = await h.client.check({ service: "" }, { timeoutMs: 1000 }).then((r) => health.HealthCheckResponse_ServingStatus[r.status], () => "UNREACHABLE");
          seen.get(h.name)!.add(status);
          statuses.push({ at: Date.now(), name: h.name, status });
        }
        await sleep(500);
      }
    })();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    const load = startLoad(m, tenants, rec, { workers: 3, pauseMs: 20 });
    await sleep(3_000);
    const down = Date.now();
    await nats!.kill(0);
    log("NATS SIGKILLed");
    let peak = { unsent: 0, oldestMs: 0 };
    while (Date.now() - down < 30_000) {
      const b = await outboxBacklog(m, admin);
      if (b.unsent > peak.unsent) peak = b;
      await sleep(1_000);
    }
    await nats!.restart(0);
    const up = Date.now();
    log(`NATS back after ${up - down} ms; outbox backlog peaked at ${peak.unsent} rows (oldest ${peak.oldestMs} ms)`);
    await sleep(5_000);
    await load.stop();
    const d = await drained();
    await sleep(1_000);
    polling = false;
    await poller;
    await admin.end();
    const servingAgain = healthOf.map((h) => {
      const after = statuses.filter((s) => s.name === h.name && s.at >= up);
      const first = after.find((s) => s.status === "SERVING");
      return { name: h.name, ms: first === undefined ? undefined : first.at - up };
    });
    log(`calls ${rec.calls.length} ${JSON.stringify(rec.codes())}; ${d.events} events, drained ${d.ms} ms after the load stopped`);
    log(`health: ${[...seen.entries()].map(([n, s]) => `${n} ${[...s].join("/")}`).join("; ")}; SERVING again ${servingAgain.map((s) => `${s.name} +${s.ms} ms`).join(", ")}`);
    assert.deepEqual(rec.bad, [], `no INTERNAL or UNKNOWN\n${logsOf(mesh!, rec.bad)}`);
    assert.ok(peak.unsent > 0, "the outboxes backed up while NATS was down");
    for (const [name, s] of seen) assert.ok(s.has("NOT_SERVING"), `${name} reported NOT_SERVING while NATS was down`);
    for (const s of servingAgain) assert.ok(s.ms !== undefined, `${s.name} is SERVING again`);
    assert.deepEqual(d.problems, [], "every outbox drained, every event handled once, nothing parked");
    assert.deepEqual(await checkCommittedChanges(m, adminUrl, rec), []);
    assert.ok(rec.ok("updateTenant") > 0 && rec.ok("signIn") > 0);
  });

  test("audit down for a minute: nothing else notices, every event committed meanwhile is recorded once, the trees stay consistent", async (t) => {
    const m = mesh!;
    if (!m.services.includes("audit")) return t.skip("services/audit is not built");
    const rec = new Recorder();
    const watch = new AuditWatch(m, tenants.map((x) => x.id)).start(2_000);
    // A lighter load than the other cases: audit ingests ~40 events/s (docs/capacity.md §7), so the minute's backlog drains in seconds, not a minute.
    const load = startLoad(m, tenants, rec, { workers: 2, pauseMs: 80 });
    await sleep(2_000);
    const before = (await outboxEvents(m, adminUrl)).length;
    const down = Date.now();
    for (const r of m.replicas("audit")) await m.kill("audit", r.index);
    log(`audit SIGKILLed (${m.replicas("audit").length} replica(s))`);
    await sleep(auditDownMs);
    const during = (await outboxEvents(m, adminUrl)).length - before;
    let servingMs = 0;
    for (const r of m.replicas("audit")) servingMs = Math.max(servingMs, await m.restart("audit", r.index));
    const up = Date.now();
    log(`audit restarted after ${up - down} ms (SERVING after ${servingMs} ms); ${during} events committed while it was down`);
    await sleep(1_000);
    await load.stop();
    const d = await drained(120_000);
    const caughtUpMs = Date.now() - up;
    await watch.stop();
    await watch.sample();
    const c = await watch.checkConsistency();
    const trail = await checkAuditEntries(m, adminUrl, c.sizes);
    log(`calls ${rec.calls.length} ${JSON.stringify(rec.codes())}; ${d.events} events, every consumer (audit's included) caught up ${d.ms} ms after the load stopped, ${caughtUpMs} ms after audit was back`);
    log(`audit: ${trail.entries} entries for ${trail.events} events; ${c.checkpoints} checkpoints of the test tenants (${c.distinct} distinct sizes up to ${JSON.stringify(Object.values(c.sizes))}), ${c.proofs} consistency proofs verified; GetCheckpoint failures ${JSON.stringify(watch.failures)}`);
    assert.deepEqual(rec.bad, [], `no INTERNAL or UNKNOWN\n${logsOf(m, rec.bad)}`);
    assert.deepEqual(rec.calls.filter((x) => x.code !== "OK").map((x) => `${x.op}: ${x.code}`), [], "no other service noticed audit was down");
    assert.ok(during > 0, "events were committed while audit was down");
    assert.ok((watch.failures["Unavailable"] ?? 0) > 0, "audit was unreachable while it was down");
    assert.deepEqual(d.problems, [], "every outbox drained, every event handled once (audit's trail and monitor included), nothing parked");
    assert.deepEqual(c.problems, [], "every checkpoint verifies and is a prefix of every later one of its tenant");
    assert.deepEqual(trail.problems, [], "every committed event, those of the minute audit was down included, is exactly one audit entry");
    assert.deepEqual(await checkCommittedChanges(m, adminUrl, rec), []);
  });
});
