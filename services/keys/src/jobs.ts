import { describeError, runAsPlatform, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";

/** How to build a PeriodicJob. */
export interface PeriodicJobOptions {
  /** Names the job in logs and in its advisory lock (`bulwark.keys.<name>`). */
  readonly name: string;
  readonly intervalMs: number;
  readonly db: Database;
  readonly logger: Logger;
  /** One run, in the platform scope, inside the transaction that holds the lock. */
  readonly run: (em: EntityManager) => Promise<void>;
  readonly afterRun?: () => void;
}

/**
 * Periodic work that exactly one replica does at a time: each run opens a
 * transaction in the explicit platform scope and takes a transaction-level
 * Postgres advisory lock with `pg_try_advisory_xact_lock`; a replica that
 * does not get it skips this round. A crashed run's lock ends with its
 * connection, so the next round elsewhere takes over. (The mesh's shared
 * scheduler in libs/ will replace this.)
 */
export class PeriodicJob {
  readonly #o: PeriodicJobOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<boolean> | undefined;
  #stopped = false;

  constructor(options: PeriodicJobOptions) {
    this.#o = options;
  }

  /** Starts the timer; the first run is one interval from now. */
  start(): void {
    const tick = (): void => {
      if (this.#stopped) return;
      void this.runOnce().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.intervalMs).unref();
      });
    };
    this.#timer = setTimeout(tick, this.#o.intervalMs).unref();
  }

  /** One run now (tests call it directly); false when another replica holds the lock or it failed. */
  runOnce(): Promise<boolean> {
    this.#running ??= this.#runLocked().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #runLocked(): Promise<boolean> {
    try {
      const ran = await runAsPlatform(`periodic job ${this.#o.name}`, () =>
        this.#o.db.transaction(async (em) => {
          const [lock] = await em.execute<{ ok: boolean }[]>("select pg_try_advisory_xact_lock(hashtext(?)) as ok", [`bulwark.keys.${this.#o.name}`]);
          if (lock?.ok !== true) return false;
          await this.#o.run(em);
          return true;
        }),
      );
      if (ran) this.#o.afterRun?.();
      return ran;
    } catch (err) {
      this.#o.logger.warn({ job: this.#o.name, err: describeError(err) }, "periodic job failed; retrying next round");
      return false;
    }
  }

  /** Stops the timer and waits for a run in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
