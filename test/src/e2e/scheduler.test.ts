/**
 * The shared scheduler on real Postgres: replicas sharing one schema run a
 * job exactly once per period, a run whose replica died is taken over
 * after its lease, a failing run publishes `scheduler.job_failed` through
 * the outbox and runs again next period (or within it after a back-off,
 * for a job that asks), and stop() waits for the running
 * job. Each replica is its own Scheduler (and its own database pool) over
 * tenancy's schema, with an injected clock.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ScheduledJobFailed } from "@bulwark/contracts";
import { createLogger } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { Scheduler, streamOf, type JobSpec } from "@bulwark/server";
import { tenancyModule } from "@bulwark/tenancy";
import { adminQuery, eventually, startTestService, type Started } from "../support/harness.js";
import { collectEvents, sleep, type Collector } from "./support-e2e.js";

interface Run {
  readonly replica: string;
  readonly period: string;
  readonly attempt: number;
}

/** A clock the test moves by hand. */
function manualClock(start: string): { now: () => Date; advance(ms: number): void } {
  let t = new Date(start).getTime();
  return { now: () => new Date(t), advance: (ms) => (t += ms) };
}

async function runRows(schema: string, job: string): Promise<{ period_start: Date; owner: string; attempt: number; outcome: string | null; error: string | null }[]> {
  return adminQuery(`select period_start, owner, attempt, outcome, error from "${schema}".scheduled_runs where job = $1 order by period_start`, [job]);
}

describe("scheduler", () => {
  let svc: Started;
  const dbs: Database[] = [];
  const schedulers: Scheduler[] = [];
  const logger = createLogger("tenancy", process.env["BULWARK_TEST_LOG_LEVEL"] ?? "silent");

  /** A replica of tenancy's scheduler: its own pool on the same schema, the service's publisher. */
  async function replica(name: string, jobs: JobSpec[], clock: () => Date): Promise<Scheduler> {
    const db = await Database.open({ clientUrl: svc.config.DATABASE_URL, schema: svc.config.DATABASE_SCHEMA, entities: [], poolMax: 2 });
    dbs.push(db);
    const s = new Scheduler({ service: "tenancy", db, events: svc.running.deps.events, logger, jobs, clock, replica: name, afterCommit: () => svc.running.deps.relay.nudge() });
    schedulers.push(s);
    return s;
  }

  before(async () => {
    svc = await startTestService(tenancyModule);
  });

  after(async () => {
    for (const s of schedulers) await s.stop();
    for (const db of dbs) await db.close();
    await svc.stop();
  });

  test("two replicas over the same schema run a job exactly once per period", async () => {
    const clock = manualClock("2031-03-01T10:00:00Z");
    const runs: Run[] = [];
    const job = (replica: string): JobSpec => ({
      name: "once_per_period",
      everyMs: 60_000,
      timeoutMs: 10_000,
      async run(ctx) {
        runs.push({ replica, period: ctx.periodStart.toISOString(), attempt: ctx.attempt });
        await sleep(20);
        return { done: 1 };
      },
    });
    const a = await replica("replica-a", [job("a")], clock.now);
    const b = await replica("replica-b", [job("b")], clock.now);
    for (let i = 0; i < 3; i++) await Promise.all([a.tick(), b.tick()]);
    assert.equal(runs.length, 1, "one run in the first period");
    clock.advance(30_000);
    await Promise.all([a.tick(), b.tick()]);
    assert.equal(runs.length, 1, "still the same period");
    clock.advance(30_000);
    for (let i = 0; i < 3; i++) await Promise.all([b.tick(), a.tick()]);
    assert.equal(runs.length, 2, "one run in the second period");
    assert.deepEqual(
      runs.map((r) => r.period),
      ["2031-03-01T10:00:00.000Z", "2031-03-01T10:01:00.000Z"],
    );
    const rows = await runRows(svc.config.DATABASE_SCHEMA, "once_per_period");
    assert.deepEqual(
      rows.map((r) => [r.attempt, r.outcome]),
      [
        [1, "succeeded"],
        [1, "succeeded"],
      ],
    );
  });

  test("a run whose replica dies mid-run is taken over after its lease expires", async () => {
    const clock = manualClock("2031-03-02T10:00:00Z");
    const runs: Run[] = [];
    let releaseDead!: () => void;
    const dead = new Promise<void>((resolve) => (releaseDead = resolve));
    const spec = (replica: string, body: () => Promise<void>): JobSpec => ({
      name: "takeover",
      everyMs: 3_600_000,
      // The dead replica's timer never fires within the test: only the lease frees the run.
      timeoutMs: 3_600_000,
      leaseMs: 30_000,
      async run(ctx) {
        runs.push({ replica, period: ctx.periodStart.toISOString(), attempt: ctx.attempt });
        await body();
      },
    });
    // Replica a claims and then hangs, as a replica killed mid-run would: it never finishes.
    const a = await replica("replica-dead", [spec("dead", () => dead)], clock.now);
    const b = await replica("replica-live", [spec("live", async () => undefined)], clock.now);
    const hanging = a.tick();
    await eventually(() => runs.length === 1);
    await b.tick();
    assert.equal(runs.length, 1, "a live lease is not taken over");
    clock.advance(31_000);
    await b.tick();
    assert.deepEqual(
      runs.map((r) => [r.replica, r.attempt]),
      [
        ["dead", 1],
        ["live", 2],
      ],
    );
    const [row] = await runRows(svc.config.DATABASE_SCHEMA, "takeover");
    assert.equal(row?.owner, "replica-live");
    assert.equal(row?.outcome, "succeeded");
    // The dead replica coming back later does not overwrite the new owner's record.
    releaseDead();
    await hanging;
    const [after] = await runRows(svc.config.DATABASE_SCHEMA, "takeover");
    assert.equal(after?.owner, "replica-live");
    assert.equal(after?.attempt, 2);
  });

  test("a failing job publishes scheduler.job_failed through the outbox and runs again next period", async () => {
    const events: Collector = await collectEvents({
      ...svc.running.deps,
      stream: streamOf(svc.prefix, "tenancy").name,
      source: "tenancy",
      subjectPrefix: svc.prefix,
      durable: "e2e_scheduler_failed",
      filterSubjects: [`${svc.prefix}.tenancy.scheduler.job_failed`],
    });
    try {
      const clock = manualClock("2031-03-03T10:00:00Z");
      let calls = 0;
      const a = await replica("replica-flaky", [
        {
          name: "flaky",
          everyMs: 60_000,
          timeoutMs: 10_000,
          runAsPlatform: "a test job",
          async run() {
            calls++;
            if (calls === 1) throw new Error("the first run fails");
          },
        },
      ], clock.now);
      await a.tick();
      await a.tick();
      assert.equal(calls, 1, "a failed period is not retried within the period");
      await eventually(() => events.of("job_failed", "flaky").length === 1, 10_000);
      const failed = events.of("job_failed", "flaky")[0]!;
      const payload = failed.payload as ScheduledJobFailed;
      assert.equal(payload.job, "flaky");
      assert.equal(payload.attempt, 1);
      assert.equal(payload.replica, "replica-flaky");
      assert.match(payload.error, /the first run fails/);
      assert.equal(payload.timedOut, false);
      assert.equal(timestampDate(payload.periodStart!).toISOString(), "2031-03-03T10:00:00.000Z");
      assert.equal(failed.envelope.source, "tenancy");
      assert.equal(failed.envelope.platform, true, "the event says it was written in the platform scope");
      clock.advance(60_000);
      await a.tick();
      assert.equal(calls, 2, "the next period runs the job again");
      const rows = await runRows(svc.config.DATABASE_SCHEMA, "flaky");
      assert.deepEqual(
        rows.map((r) => r.outcome),
        ["failed", "succeeded"],
      );
      assert.match(rows[0]!.error ?? "", /the first run fails/);
      assert.equal(events.of("job_failed", "flaky").length, 1, "a success publishes nothing");
    } finally {
      await events.stop();
    }
  });

  test("a job with retryFailedAfterMs is tried again within its period after the back-off, on any replica, doubling it", async () => {
    const clock = manualClock("2031-03-06T10:00:00Z");
    const runs: Run[] = [];
    let failures = 2;
    const spec = (replica: string): JobSpec => ({
      name: "retried",
      everyMs: 3_600_000,
      timeoutMs: 10_000,
      retryFailedAfterMs: 60_000,
      async run(ctx) {
        runs.push({ replica, period: ctx.periodStart.toISOString(), attempt: ctx.attempt });
        if (failures-- > 0) throw new Error("a source is not up yet");
        return { done: 1 };
      },
    });
    const a = await replica("replica-retry-a", [spec("a")], clock.now);
    const b = await replica("replica-retry-b", [spec("b")], clock.now);
    await a.tick();
    await Promise.all([a.tick(), b.tick()]);
    assert.equal(runs.length, 1, "not before the back-off");
    clock.advance(60_000);
    await b.tick();
    await a.tick();
    assert.deepEqual(runs.map((r) => [r.replica, r.attempt]), [["a", 1], ["b", 2]], "another replica retries it once the back-off passed");
    clock.advance(60_000);
    await Promise.all([a.tick(), b.tick()]);
    assert.equal(runs.length, 2, "the second back-off is twice the first");
    clock.advance(60_000);
    await a.tick();
    await Promise.all([a.tick(), b.tick()]);
    assert.deepEqual(runs.map((r) => [r.replica, r.attempt]), [["a", 1], ["b", 2], ["a", 3]]);
    assert.ok(runs.every((r) => r.period === "2031-03-06T10:00:00.000Z"), "every attempt is of the same period");
    const rows = await runRows(svc.config.DATABASE_SCHEMA, "retried");
    assert.deepEqual(rows.map((r) => [r.owner, r.attempt, r.outcome, r.error]), [["replica-retry-a", 3, "succeeded", null]]);
    clock.advance(10 * 60_000);
    await Promise.all([a.tick(), b.tick()]);
    assert.equal(runs.length, 3, "a succeeded run is not retried");
  });

  test("a run that overruns its timeout is aborted, recorded as failed and announced as timed out", async () => {
    const events: Collector = await collectEvents({
      ...svc.running.deps,
      stream: streamOf(svc.prefix, "tenancy").name,
      source: "tenancy",
      subjectPrefix: svc.prefix,
      durable: "e2e_scheduler_timeout",
      filterSubjects: [`${svc.prefix}.tenancy.scheduler.job_failed`],
    });
    try {
      const clock = manualClock("2031-03-05T10:00:00Z");
      let aborted = false;
      const a = await replica("replica-slow", [
        {
          name: "slow",
          everyMs: 60_000,
          timeoutMs: 100,
          async run(ctx) {
            // Ignores the abort for a while, as a stuck query would.
            await sleep(400);
            aborted = ctx.signal.aborted;
          },
        },
      ], clock.now);
      await a.tick();
      assert.equal(aborted, true, "the run's signal was aborted at the timeout");
      const [row] = await runRows(svc.config.DATABASE_SCHEMA, "slow");
      assert.equal(row?.outcome, "failed");
      assert.match(row?.error ?? "", /timed out after 100 ms/);
      await eventually(() => events.of("job_failed", "slow").length === 1, 10_000);
      assert.equal((events.of("job_failed", "slow")[0]!.payload as ScheduledJobFailed).timedOut, true);
    } finally {
      await events.stop();
    }
  });

  test("stop() aborts the running job's signal and waits until it has finished and been recorded", async () => {
    const clock = manualClock("2031-03-04T10:00:00Z");
    const order: string[] = [];
    let started = false;
    let release!: () => void;
    const latch = new Promise<void>((resolve) => (release = resolve));
    let sawAbort = false;
    const a = await replica("replica-stopping", [
      {
        name: "long",
        everyMs: 60_000,
        timeoutMs: 60_000,
        async run(ctx) {
          started = true;
          await latch;
          sawAbort = ctx.signal.aborted;
          order.push("job finished");
        },
      },
    ], clock.now);
    void a.tick();
    await eventually(() => started);
    const stopped = a.stop().then(() => order.push("stop resolved"));
    // Give stop() every chance to resolve early, then let the job finish.
    await sleep(200);
    order.push("released");
    release();
    await stopped;
    assert.deepEqual(order, ["released", "job finished", "stop resolved"]);
    assert.equal(sawAbort, true, "the job saw the stop through its signal");
    const [row] = await runRows(svc.config.DATABASE_SCHEMA, "long");
    assert.equal(row?.outcome, "succeeded", "the outcome is recorded before stop() resolves");
  });
});
