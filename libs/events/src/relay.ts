import { runAsPlatform } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import type { JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { describeError, stderrLogger, type EventsLogger } from "./logger.js";

/** How a relay finds work and how eagerly it polls. */
export interface OutboxRelayOptions {
  readonly db: Database;
  readonly js: JetStreamClient;
  /** Rows claimed and published per transaction. */
  readonly batchSize?: number;
  /** Idle poll interval; `nudge()` wakes the relay sooner. */
  readonly pollIntervalMs?: number;
  /** Ceiling of the exponential backoff after failures (NATS or Postgres down). */
  readonly maxBackoffMs?: number;
  /** Delete sent rows older than this; keeps none of them forever. Off when absent. */
  readonly retentionMs?: number;
  readonly logger?: EventsLogger;
  /** Called with the ids of each batch once it is marked sent. */
  readonly onPublished?: (eventIds: readonly string[]) => void;
  /** Called when a batch failed (NATS or Postgres unreachable) and will be retried, e.g. for a metric. */
  readonly onBatchFailed?: (err: unknown) => void;
  /** Fault injection for tests: runs after the PubAcks, before the rows are marked sent. */
  readonly afterPublishBeforeMark?: () => void | Promise<void>;
}

interface OutboxRow {
  id: string;
  subject: string;
  envelope: Buffer;
  headers: Record<string, string> | null;
}

const purgeEveryMs = 60_000;

/**
 * Moves committed outbox rows to JetStream. Each batch is claimed with
 * `FOR UPDATE SKIP LOCKED` in one platform-scoped transaction, published
 * with `Nats-Msg-Id` = event id, and marked sent in that same transaction,
 * so replicas never publish a row at the same time, and a crash between
 * publish and mark only leads to a republish that JetStream deduplicates.
 * Failures are logged and retried with backoff; the loop never throws.
 */
export class OutboxRelay {
  private readonly db: Database;
  private readonly js: JetStreamClient;
  private readonly batchSize: number;
  private readonly pollIntervalMs: number;
  private readonly maxBackoffMs: number;
  private readonly logger: EventsLogger;
  private running: Promise<void> | undefined;
  private stopping = false;
  private nudged = false;
  private failures = 0;
  private wake: (() => void) | undefined;
  private lastPurge = 0;

  constructor(private readonly options: OutboxRelayOptions) {
    this.db = options.db;
    this.js = options.js;
    this.batchSize = options.batchSize ?? 100;
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.logger = options.logger ?? stderrLogger;
  }

  /** Starts the loop in the background; a second call is a no-op. */
  start(): void {
    if (this.running !== undefined) return;
    this.stopping = false;
    this.running = this.loop();
  }

  /**
   * Wakes the loop now, e.g. right after a transaction that wrote events
   * commits. While publishing is failing the relay keeps its back-off (a
   * busy service would otherwise retry on every commit); `force` wakes it
   * anyway, for a NATS reconnect.
   */
  nudge(force = false): void {
    this.nudged = true;
    if (this.failures === 0 || force) this.wake?.();
  }

  /** Stops the loop after the in-flight batch has been published and marked (or rolled back). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    this.running = undefined;
  }

  /**
   * Claims, publishes and marks one batch; returns how many rows it sent.
   * Throws on failure (the batch's transaction rolls back, rows stay unsent).
   */
  async relayBatch(): Promise<number> {
    const ids = await runAsPlatform("outbox relay publishes every tenant's events", () =>
      this.db.sql(async (em) => {
        // Claimed and marked in one statement; the mark commits only after every publish succeeded.
        const rows = (await em.execute(
          `update outbox set sent_at = now()
           where id in (select id from outbox where sent_at is null order by created_at, id limit ? for update skip locked)
           returning id, subject, envelope, headers, created_at`,
          [this.batchSize],
        )) as (OutboxRow & { created_at: Date | string })[];
        if (rows.length === 0) return [];
        // RETURNING has no order: publish in the order the events were recorded.
        const at = (r: { created_at: Date | string }): number => new Date(r.created_at).getTime();
        rows.sort((a, b) => at(a) - at(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        await Promise.all(rows.map((row) => this.publish(row)));
        await this.options.afterPublishBeforeMark?.();
        return rows.map((row) => row.id);
        // A mark lost in a Postgres crash only republishes, which JetStream deduplicates by Nats-Msg-Id.
      }, { durable: false }),
    );
    if (ids.length > 0) this.options.onPublished?.(ids);
    return ids.length;
  }

  /** Deletes sent rows older than `retentionMs`; returns how many. */
  async purgeSent(retentionMs: number): Promise<number> {
    return runAsPlatform("outbox relay purges sent events", () =>
      this.db.transaction(async (em) => {
        const rows = (await em.execute(
          "delete from outbox where sent_at < now() - make_interval(secs => ?) returning id",
          [retentionMs / 1000],
        )) as unknown[];
        return rows.length;
      }),
    );
  }

  private async publish(row: OutboxRow): Promise<void> {
    const h = natsHeaders();
    for (const [key, value] of Object.entries(row.headers ?? {})) h.set(key, value);
    await this.js.publish(row.subject, row.envelope, { msgID: row.id, headers: h });
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      this.nudged = false;
      let sent = 0;
      try {
        sent = await this.relayBatch();
        if (this.failures > 0) this.logger.warn({ failures: this.failures }, "outbox relay publishes again");
        this.failures = 0;
        await this.maybePurge();
      } catch (err) {
        this.failures += 1;
        this.options.onBatchFailed?.(err);
        // The first failure, then every tenth: an outage is one line a minute or so, not one per commit.
        if (this.failures === 1 || this.failures % 10 === 0) this.logger.warn({ err: relayProblem(err), failures: this.failures }, "outbox relay cannot publish; backing off");
      }
      if (this.stopping) break;
      if (this.failures === 0 && (sent === this.batchSize || this.nudged)) continue;
      const delay = this.failures === 0 ? this.pollIntervalMs : Math.min(this.pollIntervalMs * 2 ** this.failures, this.maxBackoffMs);
      await this.sleep(delay);
    }
  }

  private async maybePurge(): Promise<void> {
    const retention = this.options.retentionMs;
    if (retention === undefined || Date.now() - this.lastPurge < purgeEveryMs) return;
    this.lastPurge = Date.now();
    await this.purgeSent(retention);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}

/**
 * What is wrong, in words an operator can act on: NATS answers "no
 * responders" (or "jetstream is not enabled") when no stream captures the
 * subject — the stream is missing or every node holding it is down.
 */
function relayProblem(err: unknown): string {
  const text = describeError(err);
  if (/no responders|jetstream is not enabled|503/i.test(text)) return `no JetStream stream answers for the service's subjects (the stream is missing, or the nodes holding it are down): ${text}`;
  return text;
}
