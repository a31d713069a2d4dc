import { describeError, type Logger } from "@bulwark/core";
import { EventConsumer } from "@bulwark/events";
import type { ConsumerSpec, RuntimeDeps } from "./runtime.js";

/**
 * A durable consumer of another service's stream started in the
 * background and retried every second until that stream exists: the
 * runtime's own consumers must find their stream at start-up, and in a
 * deployment services start in any order (compliance before tenancy).
 */
export class BackgroundConsumer {
  readonly #consumer: EventConsumer;
  readonly #logger: Logger;
  readonly #what: string;
  #stopped = false;
  #started = false;
  #loop: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;

  constructor(deps: RuntimeDeps, spec: ConsumerSpec) {
    this.#logger = deps.logger.child({ consumer: spec.durable });
    this.#what = `${spec.source}'s events`;
    this.#consumer = new EventConsumer({ ...spec, db: deps.db, nc: deps.nc, js: deps.js, logger: this.#logger, keys: deps.keys, subjectPrefix: deps.config.EVENTS_SUBJECT_PREFIX });
  }

  /** Starts trying; returns at once. */
  start(): void {
    this.#loop = (async () => {
      for (let attempt = 0; !this.#stopped; attempt++) {
        try {
          await this.#consumer.start();
          this.#started = true;
          return;
        } catch (err) {
          if (attempt % 30 === 0) this.#logger.warn({ err: describeError(err) }, `cannot start the consumer of ${this.#what} yet; retrying`);
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#timer = setTimeout(resolve, 1_000);
        });
      }
    })();
  }

  /** True once the consumer runs (tests wait for it). */
  get running(): boolean {
    return this.#started;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
    if (this.#started) await this.#consumer.stop();
  }
}
