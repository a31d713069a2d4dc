import type { Envelope } from "@bulwark/contracts";
import type { MeshKeys } from "@bulwark/core";
import { verifiedEnvelope, type EventsLogger } from "@bulwark/events";
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient } from "@nats-io/jetstream";

/** What a StreamFollower follows and where the events go. */
export interface StreamFollowerOptions {
  readonly js: JetStreamClient;
  /** The stream, e.g. streamOf(prefix, "identity").name. */
  readonly stream: string;
  /** One subject of it. */
  readonly subject: string;
  /** The service that owns the stream: only envelopes it signed are delivered. */
  readonly source: string;
  readonly subjectPrefix: string;
  readonly keys: MeshKeys;
  /** Where to start when first started: the oldest event that can still matter. */
  readonly since: () => Date;
  /** Called for every verified event, in stream order. Must not throw. */
  readonly onEvent: (envelope: Envelope) => void;
  readonly logger: EventsLogger;
  /** Pause before re-creating the consumer after a failure (stream missing, NATS gone). */
  readonly retryMs?: number;
}

/**
 * Follows one subject of a stream for the life of the process, with an
 * ordered consumer that JetStream delivers in order and that the client
 * re-creates after a disconnection from the last sequence it delivered, so
 * a service that lost NATS for a while catches up on what it missed rather
 * than waiting for a restart. When the consumer cannot be re-created (the
 * stream does not exist yet), it retries from the last delivered sequence.
 * Events not signed by the stream's owner are dropped and logged: anyone
 * who can reach NATS can publish on a subject.
 *
 * Used for what every service must hear about at once and may not miss:
 * session revocations, permission reductions, the end of the bootstrap
 * credential.
 */
export class StreamFollower {
  readonly #o: StreamFollowerOptions;
  #lastSeq = 0;
  #stopped = false;
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  #caughtUp = false;
  #onCaughtUp: (() => void) | undefined;
  #wake: (() => void) | undefined;

  constructor(options: StreamFollowerOptions) {
    this.#o = options;
  }

  /** True once everything in the stream at start has been read. */
  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  /** Starts following; resolves when caught up with the stream, or after `waitMs`. */
  async start(waitMs = 3_000): Promise<void> {
    const caught = new Promise<void>((resolve) => (this.#onCaughtUp = resolve));
    this.#loop = this.#run();
    await Promise.race([caught, new Promise((r) => setTimeout(r, waitMs).unref())]);
  }

  #markCaughtUp(): void {
    if (this.#caughtUp) return;
    this.#caughtUp = true;
    this.#onCaughtUp?.();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      try {
        await this.#followOnce();
        failures = 0;
      } catch (err) {
        if (failures++ % 30 === 0 && !this.#stopped) this.#o.logger.warn({ stream: this.#o.stream, subject: this.#o.subject, err: err instanceof Error ? err.message.slice(0, 200) : "unknown" }, "cannot follow stream yet; retrying");
      }
      if (this.#stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#o.retryMs ?? 1_000);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async #followOnce(): Promise<void> {
    const start = this.#lastSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.#lastSeq + 1 } : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: this.#o.since().toISOString() };
    const consumer = await this.#o.js.consumers.get(this.#o.stream, { filter_subjects: this.#o.subject, ...start });
    if ((await consumer.info()).num_pending === 0) this.#markCaughtUp();
    const messages = await consumer.consume();
    this.#messages = messages;
    if (this.#stopped) {
      await messages.close();
      return;
    }
    for await (const m of messages) {
      this.#lastSeq = m.seq;
      try {
        const envelope = verifiedEnvelope(this.#o.keys, { subject: m.subject, data: m.data, header: (name) => m.headers?.get(name) || undefined }, { service: this.#o.source, subjectPrefix: this.#o.subjectPrefix });
        this.#o.onEvent(envelope);
      } catch (err) {
        this.#o.logger.warn({ subject: m.subject.slice(0, 120), seq: m.seq, err: err instanceof Error ? err.message : "unknown" }, "dropped an event not published by the stream's owner");
      }
      if (m.info.pending === 0) this.#markCaughtUp();
    }
  }

  /** Stops following. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#messages?.close().catch(() => undefined);
    await this.#loop;
  }
}
