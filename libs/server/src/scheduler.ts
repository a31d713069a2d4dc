import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ScheduledJobFailedSchema } from "@bulwark/contracts";
import { describeError, runAsPlatform, runAsService, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import { describeError as describeFailure, type EventPublisher } from "@bulwark/events";
import { CronExpressionParser } from "cron-parser";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

/** What a run of a job is given. */
export interface JobContext {
  /** The job's name. */
  readonly job: string;
  /** The start of the period this run belongs to (its identity: one run per job and period). */
  readonly periodStart: Date;
  /** 1 for the period's first claim; more when this replica took over a run whose owner died, or retries a failed one (`retryFailedAfterMs`). */
  readonly attempt: number;
  /**
   * Aborted when the run overruns its timeout or the service stops: check it
   * between batches and return (or throw) soon after.
   */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** The scheduler's clock (injectable in tests): use it instead of `Date.now()` for "expired" cut-offs. */
  now(): Date;
}

/**
 * A periodic job a service declares (`ServiceModule.jobs`). The scheduler
 * runs it on one replica per period, wherever the service has replicas.
 * A run must be idempotent: it may be repeated after a replica dies
 * mid-run, a failed run is tried again next period (or sooner, with
 * `retryFailedAfterMs`), and a period nobody was up for is skipped. A run may return counts (rows deleted, keys
 * rotated) that are logged and stored with the run.
 */
export interface JobSpec {
  /** Unique within the service: lower case, digits, `_ . -` (it is a metric label and the failure event's aggregate id). */
  readonly name: string;
  /** The period in milliseconds, aligned to the Unix epoch (UTC): 3_600_000 runs once in every clock hour. */
  readonly everyMs?: number;
  /** Or a five-field cron expression, evaluated in UTC (`0 3 * * *`: once a day from 03:00). */
  readonly cron?: string;
  /** The longest a run may take; it is then aborted and recorded as failed. */
  readonly timeoutMs: number;
  /**
   * How long a claim holds before another replica may take the run over;
   * default `timeoutMs` plus 30 s, so a live run is never taken over.
   */
  readonly leaseMs?: number;
  /**
   * Runs the job in the explicit platform scope (every tenant's rows), and
   * says why; without it the job runs as the service with no tenant, where
   * row-level security shows nothing until it enters a tenant itself.
   */
  readonly runAsPlatform?: string;
  /**
   * Tries a failed run again within its period, on whichever replica
   * polls first, after this back-off (doubled at each further attempt, at
   * most 64 times it; after a timeout at least one more lease, so the
   * overrunning run can end first). For a long period whose work depends
   * on other services being up (an hourly evaluation started before its
   * sources): without it a failed period waits for the next one.
   */
  readonly retryFailedAfterMs?: number;
  run(ctx: JobContext): Promise<Readonly<Record<string, number>> | void>;
}

/** Receives every run's outcome, for metrics. */
export interface SchedulerObserver {
  runFinished(job: string, outcome: "succeeded" | "failed", seconds: number): void;
  /** A replica took over a run whose lease had expired. */
  takenOver(job: string): void;
}

/** How a Scheduler is built. */
export interface SchedulerOptions {
  /** The service the jobs belong to: it signs and publishes the failure events. */
  readonly service: string;
  readonly db: Database;
  readonly events: EventPublisher;
  readonly logger: Logger;
  readonly jobs: readonly JobSpec[];
  /** The time, injectable for tests; default the system clock. */
  readonly clock?: () => Date;
  /** How often the scheduler looks for due jobs; default 5 s (with ±20 % jitter). */
  readonly pollMs?: number;
  /** This replica's name in the claims; default host name, process id and a random suffix. */
  readonly replica?: string;
  readonly observer?: SchedulerObserver;
  /** Called after a failure event was committed (the relay's nudge). */
  readonly afterCommit?: () => void;
  /** How long finished runs stay in `scheduled_runs`; default 7 days. */
  readonly historyMs?: number;
}

/** Options checked once at construction. */
const jobName = /^[a-z][a-z0-9_.-]{0,62}$/;
const defaultHistoryMs = 7 * 86_400_000;
/** The built-in job that forgets old runs. */
export const schedulerHistoryJob = "scheduler_history";

interface Claim {
  readonly job: JobSpec;
  readonly periodStart: Date;
  readonly attempt: number;
}

/**
 * The one scheduler of the mesh: runs each service's periodic jobs
 * (retention, expiry warnings, key rotation, checkpoint signing,
 * housekeeping) so that exactly one replica runs a job per period.
 *
 * Every poll, for each job not already running here, it computes the
 * current period (`everyMs` aligned to the epoch, or the last `cron` fire
 * time) and claims it in Postgres: `insert into scheduled_runs … on
 * conflict (job, period_start) do update … where` the existing claim is
 * unfinished and its lease has expired. The primary key lets one insert
 * win; the conditional update is the takeover of a run whose replica died
 * (killed mid-run), counted in `attempt`. A claim it lost is not asked
 * again until that period ends or the winner's lease runs out.
 *
 * A run is observable: a log line with job, period, attempt, duration and
 * the counts it returned; the observer (metrics); and on failure (a throw
 * or the timeout) a `scheduler.job_failed` event in the service's own
 * stream, written through the outbox in the same transaction that records
 * the outcome. A failed period is not retried within the period (the next
 * period runs the job again) unless the job sets `retryFailedAfterMs`: its
 * failed run's `lease_until` is then the time it may be claimed again, and
 * a later poll re-claims the finished, failed row (`attempt` + 1).
 */
export class Scheduler {
  readonly #opts: SchedulerOptions;
  readonly #jobs: readonly JobSpec[];
  readonly #clock: () => Date;
  readonly #replica: string;
  /** Runs in progress on this replica, by job. */
  readonly #active = new Map<string, Promise<void>>();
  /** Per job: a period already settled (finished, or lost) and when to look at it again. */
  readonly #settled = new Map<string, { period: number; recheckAt: number }>();
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #stopping = false;

  constructor(opts: SchedulerOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? (() => new Date());
    this.#replica = opts.replica ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
    const history: JobSpec = {
      name: schedulerHistoryJob,
      everyMs: 3_600_000,
      timeoutMs: 60_000,
      runAsPlatform: "the scheduler forgets finished runs of every job",
      run: (ctx) => this.#pruneHistory(ctx),
    };
    const jobs = [...opts.jobs, history];
    const names = new Set<string>();
    for (const job of jobs) {
      if (!jobName.test(job.name)) throw new Error(`scheduled job ${JSON.stringify(job.name)}: a name is lower case letters, digits and _ . -`);
      if (names.has(job.name)) throw new Error(`scheduled job ${job.name} is declared twice`);
      names.add(job.name);
      if ((job.everyMs === undefined) === (job.cron === undefined)) throw new Error(`scheduled job ${job.name}: set everyMs or cron, not both`);
      if (job.everyMs !== undefined && !(Number.isInteger(job.everyMs) && job.everyMs >= 1000)) throw new Error(`scheduled job ${job.name}: everyMs must be an integer of at least 1000`);
      if (job.cron !== undefined) CronExpressionParser.parse(job.cron, { tz: "UTC" });
      if (!(job.timeoutMs > 0)) throw new Error(`scheduled job ${job.name}: timeoutMs must be positive`);
      if (job.retryFailedAfterMs !== undefined && !(Number.isInteger(job.retryFailedAfterMs) && job.retryFailedAfterMs >= 100)) throw new Error(`scheduled job ${job.name}: retryFailedAfterMs must be an integer of at least 100`);
    }
    this.#jobs = jobs;
  }

  /** This replica's name in `scheduled_runs.owner`. */
  get replica(): string {
    return this.#replica;
  }

  /** The jobs it runs, the built-in history job included. */
  get jobs(): readonly string[] {
    return this.#jobs.map((j) => j.name);
  }

  /** Starts polling in the background. */
  start(): void {
    if (this.#timer !== undefined || this.#stopping) return;
    const pollMs = this.#opts.pollMs ?? 5_000;
    const schedule = (): void => {
      if (this.#stopping) return;
      this.#timer = setTimeout(() => {
        this.#poll();
        schedule();
      }, pollMs * (0.8 + Math.random() * 0.4));
      this.#timer.unref();
    };
    this.#poll();
    schedule();
  }

  /**
   * One poll: claims every due job and runs what it won; resolves when
   * those runs have finished. `start()` polls on a timer; tests call this
   * with an injected clock.
   */
  async tick(): Promise<void> {
    await Promise.all(this.#poll());
  }

  /**
   * Stops claiming, aborts the signal of running jobs (they should return
   * at their next batch boundary) and waits until every run has finished
   * and recorded its outcome.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#abort.abort(new Error("the service is stopping"));
    await Promise.all(this.#active.values());
  }

  /** The period a job is in at `now` (ms since the epoch). */
  periodOf(job: JobSpec, now: Date): number {
    if (job.everyMs !== undefined) return Math.floor(now.getTime() / job.everyMs) * job.everyMs;
    // prev() of "now + 1 ms" includes a fire time equal to now.
    return CronExpressionParser.parse(job.cron!, { currentDate: new Date(now.getTime() + 1), tz: "UTC" }).prev().getTime();
  }

  #poll(): Promise<void>[] {
    if (this.#stopping) return [];
    const now = this.#clock();
    const started: Promise<void>[] = [];
    for (const job of this.#jobs) {
      if (this.#active.has(job.name)) continue;
      const period = this.periodOf(job, now);
      const settled = this.#settled.get(job.name);
      if (settled !== undefined && settled.period === period && now.getTime() < settled.recheckAt) continue;
      const run = this.#claimAndRun(job, new Date(period)).finally(() => this.#active.delete(job.name));
      this.#active.set(job.name, run);
      started.push(run);
    }
    return started;
  }

  async #claimAndRun(job: JobSpec, periodStart: Date): Promise<void> {
    let claim: Claim | undefined;
    try {
      claim = await this.#claim(job, periodStart);
    } catch (err) {
      this.#opts.logger.warn({ job: job.name, err: describeError(err) }, "could not claim a scheduled job; will try again");
      return;
    }
    if (claim === undefined) return;
    await this.#run(claim);
  }

  /** Claims the period for this replica, or learns when to look again. */
  async #claim(job: JobSpec, periodStart: Date): Promise<Claim | undefined> {
    const now = this.#clock();
    const leaseMs = job.leaseMs ?? job.timeoutMs + 30_000;
    const leaseUntil = new Date(now.getTime() + leaseMs);
    const { won, retry, other } = await runAsPlatform("the scheduler claims a run of a periodic job", () =>
      this.#opts.db.transaction(async (em) => {
        const rows = await em.execute<{ attempt: number }[]>(
          `insert into scheduled_runs as r (job, period_start, tenant_id, owner, attempt, claimed_at, lease_until)
             values (?, ?, null, ?, 1, ?, ?)
           on conflict (job, period_start) do update
             set owner = excluded.owner, attempt = r.attempt + 1, claimed_at = excluded.claimed_at, lease_until = excluded.lease_until
             where r.finished_at is null and r.lease_until <= excluded.claimed_at
           returning attempt`,
          [job.name, periodStart, this.#replica, now, leaseUntil],
        );
        if (rows[0] !== undefined) return { won: rows[0].attempt, retry: false, other: undefined };
        if (job.retryFailedAfterMs !== undefined) {
          // A failed run whose back-off (its lease_until once finished) has passed: claimed again, as a new attempt.
          const again = await em.execute<{ attempt: number }[]>(
            `update scheduled_runs set owner = ?, attempt = attempt + 1, claimed_at = ?, lease_until = ?, finished_at = null, outcome = null, error = null, duration_ms = null, summary = null
             where job = ? and period_start = ? and outcome = 'failed' and lease_until <= ? returning attempt`,
            [this.#replica, now, leaseUntil, job.name, periodStart, now],
          );
          if (again[0] !== undefined) return { won: again[0].attempt, retry: true, other: undefined };
        }
        const existing = await em.execute<{ finished_at: Date | null; lease_until: Date; outcome: string | null }[]>("select finished_at, lease_until, outcome from scheduled_runs where job = ? and period_start = ?", [job.name, periodStart]);
        return { won: undefined, retry: false, other: existing[0] };
      }),
    );
    if (won !== undefined) {
      if (retry) {
        this.#opts.logger.info({ job: job.name, periodStart, attempt: won }, "retrying a failed scheduled run within its period");
      } else if (won > 1) {
        this.#opts.observer?.takenOver(job.name);
        this.#opts.logger.warn({ job: job.name, periodStart, attempt: won }, "took over a scheduled run whose replica did not finish it");
      }
      this.#settled.set(job.name, { period: periodStart.getTime(), recheckAt: Number.POSITIVE_INFINITY });
      return { job, periodStart, attempt: won };
    }
    // Finished (by anyone): nothing to do until the next period, or until a failed run's retry is due.
    // Running elsewhere: look again when its lease ends.
    const retryDue = other?.outcome === "failed" && job.retryFailedAfterMs !== undefined;
    const recheckAt = other === undefined || (other.finished_at !== null && !retryDue) ? Number.POSITIVE_INFINITY : new Date(other.lease_until).getTime();
    this.#settled.set(job.name, { period: periodStart.getTime(), recheckAt });
    return undefined;
  }

  async #run(claim: Claim): Promise<void> {
    const { job, periodStart, attempt } = claim;
    const logger = this.#opts.logger.child({ job: job.name, periodStart: periodStart.toISOString(), attempt });
    const controller = new AbortController();
    const onStop = (): void => controller.abort(this.#abort.signal.reason);
    this.#abort.signal.addEventListener("abort", onStop, { once: true });
    if (this.#abort.signal.aborted) onStop();
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), job.timeoutMs);
    });
    const ctx: JobContext = { job: job.name, periodStart, attempt, signal: controller.signal, logger, now: this.#clock };
    const execute = (): Promise<Readonly<Record<string, number>> | void> => (job.runAsPlatform !== undefined ? runAsPlatform(job.runAsPlatform, () => job.run(ctx)) : job.run(ctx));
    // An async wrapper: a job that throws before its first await still fails as a rejected run.
    const running = (async () => runAsService(this.#opts.service, undefined, execute))();
    logger.debug("scheduled job started");
    let outcome: { ok: true; summary: Readonly<Record<string, number>> | undefined } | { ok: false; err: unknown; timedOut: boolean };
    try {
      const result = await Promise.race([running, timedOut]);
      outcome = result === "timeout" ? { ok: false, err: new Error(`timed out after ${job.timeoutMs} ms`), timedOut: true } : { ok: true, summary: result ?? undefined };
    } catch (err) {
      outcome = { ok: false, err, timedOut: false };
    } finally {
      clearTimeout(timer);
    }
    if (!outcome.ok && outcome.timedOut) controller.abort(new Error("the run overran its timeout"));
    const durationMs = Math.round(performance.now() - started);
    const retryAt = outcome.ok || job.retryFailedAfterMs === undefined ? undefined : this.#retryAt(job, attempt, outcome.timedOut);
    const recorded = await this.#finish(claim, durationMs, outcome, retryAt).catch((err: unknown) => {
      logger.error({ err: describeError(err) }, "could not record the outcome of a scheduled run; its lease will expire and another replica takes it over");
      return undefined;
    });
    this.#opts.observer?.runFinished(job.name, outcome.ok ? "succeeded" : "failed", durationMs / 1000);
    if (recorded === false) logger.warn({ durationMs, outcome: outcome.ok ? "succeeded" : "failed" }, "the run's claim is no longer this replica's (its lease expired and another replica took it over): its outcome is left to that replica");
    else if (outcome.ok) logger.info({ durationMs, ...(outcome.summary !== undefined ? { summary: outcome.summary } : {}) }, "scheduled job succeeded");
    else if (retryAt !== undefined) logger.error({ durationMs, timedOut: outcome.timedOut, err: describeError(outcome.err), retryAt: retryAt.toISOString() }, "scheduled job failed; it is tried again after a back-off");
    else logger.error({ durationMs, timedOut: outcome.timedOut, err: describeError(outcome.err) }, "scheduled job failed; it runs again next period");
    if (recorded === true && retryAt !== undefined) this.#settled.set(job.name, { period: periodStart.getTime(), recheckAt: retryAt.getTime() });
    if (recorded && !outcome.ok) this.#opts.afterCommit?.();
    // A run that overran keeps this replica's slot until it really ends, so it never runs twice here.
    if (!outcome.ok && outcome.timedOut) await running.then(() => undefined, () => undefined);
    this.#abort.signal.removeEventListener("abort", onStop);
  }

  /**
   * Records the outcome if the claim is still this replica's (a run taken
   * over meanwhile leaves the record to the new owner), with the failure
   * event in the same transaction.
   */
  async #finish(claim: Claim, durationMs: number, outcome: { ok: true; summary: Readonly<Record<string, number>> | undefined } | { ok: false; err: unknown; timedOut: boolean }, retryAt?: Date): Promise<boolean> {
    const { job, periodStart, attempt } = claim;
    const error = outcome.ok ? null : describeFailure(outcome.err);
    return runAsPlatform("the scheduler records the outcome of a periodic job", () =>
      this.#opts.db.transaction(async (em: EntityManager) => {
        // A finished run's lease_until is only read for a retry: when a failed run may be claimed again.
        const rows = await em.execute<{ job: string }[]>(
          `update scheduled_runs set finished_at = ?, outcome = ?, error = ?, duration_ms = ?, summary = ?::jsonb, lease_until = coalesce(?, lease_until)
           where job = ? and period_start = ? and owner = ? and attempt = ? and finished_at is null returning job`,
          [this.#clock(), outcome.ok ? "succeeded" : "failed", error, durationMs, outcome.ok && outcome.summary !== undefined ? JSON.stringify(outcome.summary) : null, retryAt ?? null, job.name, periodStart, this.#replica, attempt],
        );
        if (rows.length === 0) return false;
        if (!outcome.ok) {
          await this.#opts.events.publish(em, {
            aggregate: "scheduler",
            verb: "job_failed",
            aggregateId: job.name,
            schema: ScheduledJobFailedSchema,
            payload: create(ScheduledJobFailedSchema, {
              job: job.name,
              periodStart: timestampFromDate(periodStart),
              attempt,
              replica: this.#replica,
              error: error ?? "",
              duration: durationFromMs(durationMs),
              timedOut: outcome.timedOut,
            }),
          });
        }
        return true;
      }),
    );
  }

  /** When a failed run may be tried again: the back-off doubled per attempt (at most 64 times), at least a lease after a timeout. */
  #retryAt(job: JobSpec, attempt: number, timedOut: boolean): Date {
    const backoff = job.retryFailedAfterMs! * 2 ** Math.min(Math.max(attempt - 1, 0), 6);
    const wait = timedOut ? Math.max(backoff, job.leaseMs ?? job.timeoutMs + 30_000) : backoff;
    return new Date(this.#clock().getTime() + wait);
  }

  /** The built-in job: forgets finished runs older than the history window, in bounded batches. */
  async #pruneHistory(ctx: JobContext): Promise<Record<string, number>> {
    const cutoff = new Date(ctx.now().getTime() - (this.#opts.historyMs ?? defaultHistoryMs));
    let deleted = 0;
    for (let batch = 0; batch < 100 && !ctx.signal.aborted; batch++) {
      const rows = await this.#opts.db.transaction((em) =>
        em.execute<{ job: string }[]>("delete from scheduled_runs where ctid in (select ctid from scheduled_runs where finished_at < ? limit 1000) returning job", [cutoff]),
      );
      deleted += rows.length;
      if (rows.length < 1000) break;
    }
    return { deleted };
  }
}
