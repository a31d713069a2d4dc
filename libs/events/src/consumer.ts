import type { Message } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { newRequestId, runAsPlatform, runWithContext, type MeshKeys } from "@bulwark/core";
import { fromBinary } from "@bufbuild/protobuf";
import { contractRegistry, EnvelopeSchema, type Envelope } from "@bulwark/contracts";
import { arrayLiteral, type Database, type EntityManager, type Statements } from "@bulwark/db";
import { AckPolicy, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { contextFromEnvelope } from "./envelope.js";
import { ConsumerError } from "./errors.js";
import { describeError, stderrLogger, type EventsLogger } from "./logger.js";
import { verifiedEnvelope, verifiedEnvelopeAsync } from "./signature.js";

/** One event as a handler sees it. */
export interface ConsumedEvent {
  readonly envelope: Envelope;
  /** The payload unpacked through the contract registry; undefined if its type is unknown here. */
  readonly payload: Message | undefined;
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Handles one event inside the consumer's transaction: its writes commit
 * together with the inbox record, or not at all.
 */
export type EventHandler = (event: ConsumedEvent, em: EntityManager) => Promise<void>;

/**
 * Handles several events, in stream order, inside one transaction that also
 * holds their inbox rows. The transaction starts with no tenant scope: the
 * handler scopes each write itself (`scopeToEvent`, `scopeToTenant`), so
 * row-level security still checks every row against its own tenant. It is
 * a `Database.sql` transaction (statements straight to the driver, each
 * text prepared once per connection): a batch's statements should keep a
 * fixed text whatever the number of events (`arrayLiteral`).
 */
export type BatchEventHandler = (events: readonly ConsumedEvent[], sql: Statements) => Promise<void>;

/** Batch mode of an EventConsumer: several messages per transaction. */
export interface BatchOptions {
  /** Messages handled in one transaction at most. */
  readonly maxMessages: number;
  /** How long to wait for more messages once one is in hand (0: take only what has arrived). */
  readonly maxWaitMs?: number;
  readonly handle: BatchEventHandler;
  /**
   * Above 1: a batch's events are split by tenant (events without a tenant
   * are one group), each tenant's in a transaction of its own with its
   * inbox rows, up to this many transactions at once; a failing tenant's
   * events go one by one through `handle` while the others commit. Each
   * transaction then holds only one tenant's locks. Default 1: the whole
   * batch in one transaction.
   */
  readonly parallelTenants?: number;
}

/** Scopes the rest of a batch transaction to one event's tenant, or to the platform when the event is platform-wide. */
export async function scopeToEvent(em: Statements, envelope: Envelope): Promise<void> {
  const platform = envelope.tenantId === "" && envelope.platform;
  await em.execute("select set_config('app.platform', ?, true), set_config('app.tenant_id', ?, true)", [platform ? "on" : "", envelope.tenantId]);
}

/** Scopes the rest of a batch transaction to one tenant (and out of the platform scope). */
export async function scopeToTenant(em: Statements, tenantId: string): Promise<void> {
  await em.execute("select set_config('app.platform', '', true), set_config('app.tenant_id', ?, true)", [tenantId]);
}

/** A durable consumer of one stream. */
export interface EventConsumerOptions {
  readonly db: Database;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly stream: string;
  /** The service that owns the stream: only envelopes it signed are handled (others are parked). */
  readonly source: string;
  /** The public keys events are checked against. */
  readonly keys: MeshKeys;
  /** The mesh's subject prefix (`bulwark`): an event's subject must be `<prefix>.<source>.…`. */
  readonly subjectPrefix: string;
  /** Durable name, also the inbox's `consumer` key: unique per service and purpose. */
  readonly durable: string;
  readonly filterSubjects: readonly string[];
  readonly handle: EventHandler;
  /**
   * Batch mode: up to `maxMessages` messages are checked (bad signatures
   * parked as usual), those already in the inbox skipped, and the rest
   * recorded in the inbox and given to `batch.handle` in one transaction;
   * all are acknowledged after it commits. If the batch fails, its messages
   * are handled one by one with `handle` (retries and parking as usual), so
   * one poison message does not hold back the others.
   */
  readonly batch?: BatchOptions;
  /**
   * Whether an event concerns this consumer at all. One that does not is
   * acknowledged at once, without a transaction or an inbox row (a mailer
   * ignoring the many sign-ins from known devices, say). Must be pure, and
   * decide from the event alone: it is asked first of the event as it
   * claims to be, before its signature is checked, and what it refuses is
   * acknowledged unchecked — the check costs more than most events are
   * worth to such a consumer, and an event it ignores can do nothing here,
   * forged or not (a genuine event reads the same either way, its bytes
   * being what was signed; the stream's recording consumers still park a
   * forgery). What it accepts is checked as usual, then asked again.
   */
  readonly relevant?: (event: ConsumedEvent) => boolean;
  /** Deliveries before a failing message is parked. */
  readonly maxDeliver?: number;
  /** Redelivery delays after the 1st, 2nd, … failure; the last repeats. */
  readonly backoffMs?: readonly number[];
  /** How long the server waits for an ack before redelivering. */
  readonly ackWaitMs?: number;
  readonly logger?: EventsLogger;
  /** Called when a delivery was skipped because the inbox already has its event id. */
  readonly onDuplicate?: (eventId: string) => void;
  /** Called after a message was parked. */
  readonly onParked?: (eventId: string) => void;
  /** Called for every delivery of a message the server had delivered before (a redelivery). */
  readonly onRedelivered?: () => void;
  /**
   * For a stream of another service that may not be deployed yet (or starts
   * after this one): instead of failing `start()`, wait for the stream in
   * the background, checking with growing delays (up to 30 s), and start
   * consuming once it appears. Its messages are kept by JetStream, so
   * nothing published after the stream exists is missed.
   */
  readonly waitForStream?: boolean;
}

/** Where a durable consumer stands on the server, from its consumer info. */
export interface ConsumerLag {
  /** Messages of the stream not yet delivered to it (`num_pending`). */
  readonly pending: number;
  /** Delivered and not yet acknowledged (`num_ack_pending`). */
  readonly ackPending: number;
  /** Delivered more than once and not yet acknowledged (`num_redelivered`). */
  readonly redelivered: number;
}

/**
 * Extra deliveries the server allows beyond `maxDeliver`, so that a message
 * whose parking failed (Postgres briefly down) is offered again instead of
 * being dropped by the server.
 */
const parkingRetries = 3;
const tracer = trace.getTracer("@bulwark/events");

/**
 * Runs a handler for every event of a durable pull consumer, exactly once in
 * effect: the event id goes into the inbox in the handler's transaction, so
 * a redelivered event is acknowledged and skipped. The handler runs in the
 * tenant, principal, request and trace context of the call that caused the
 * event. A failing handler is retried with growing delays and, after
 * `maxDeliver` tries, the message is parked in `parked_events` and
 * terminated so later messages keep flowing.
 */
export class EventConsumer {
  private readonly maxDeliver: number;
  private readonly backoffMs: readonly number[];
  private readonly logger: EventsLogger;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private jsm: JetStreamManager | undefined;

  constructor(private readonly options: EventConsumerOptions) {
    this.maxDeliver = options.maxDeliver ?? 5;
    this.backoffMs = options.backoffMs ?? [1_000, 5_000, 30_000, 120_000];
    this.logger = options.logger ?? stderrLogger;
    if (this.maxDeliver < 1 || this.backoffMs.length === 0) throw new ConsumerError("maxDeliver must be at least 1 and backoffMs non-empty");
    if (options.batch !== undefined && !(options.batch.maxMessages >= 1)) throw new ConsumerError("batch.maxMessages must be at least 1");
  }

  /** Creates or updates the durable consumer and starts handling messages in the background. */
  async start(): Promise<void> {
    if (this.loop !== undefined) return;
    const { stream } = this.options;
    if (this.options.waitForStream === true) {
      const jsm = await jetstreamManager(this.options.nc);
      const present = await jsm.streams.info(stream).then(
        () => true,
        () => false,
      );
      if (!present) {
        this.loop = this.#waitThenConsume(jsm);
        return;
      }
    }
    await this.#consume();
  }

  /** Checks for the stream with growing delays until it exists or the consumer is stopped, then consumes. */
  async #waitThenConsume(jsm: JetStreamManager): Promise<void> {
    let delayMs = 500;
    this.logger.warn({ stream: this.options.stream, durable: this.options.durable }, "the stream does not exist yet; the consumer waits for it");
    while (!this.#stopping) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, delayMs).unref();
      });
      if (this.#stopping) return;
      delayMs = Math.min(delayMs * 2, 30_000);
      const present = await jsm.streams.info(this.options.stream).then(
        () => true,
        () => false,
      );
      if (!present) continue;
      try {
        await this.#consume(true);
      } catch (err) {
        this.logger.warn({ durable: this.options.durable, err: describeError(err) }, "starting the consumer failed; retrying");
        continue;
      }
      return;
    }
  }

  #stopping = false;
  #wake: (() => void) | undefined;

  async #consume(inLoop = false): Promise<void> {
    const { stream, durable } = this.options;
    try {
      const jsm = await jetstreamManager(this.options.nc);
      this.jsm = jsm;
      const config = {
        ack_policy: AckPolicy.Explicit,
        max_deliver: this.maxDeliver + parkingRetries,
        ack_wait: nanos(this.options.ackWaitMs ?? 30_000),
        ...filterConfig(this.options.filterSubjects),
      };
      const exists = await jsm.consumers.info(stream, durable).then(
        () => true,
        () => false,
      );
      if (exists) await jsm.consumers.update(stream, durable, config);
      else await jsm.consumers.add(stream, { durable_name: durable, ...config });
      const consumer = await this.options.js.consumers.get(stream, durable);
      this.messages = await consumer.consume({ max_messages: Math.max(64, 2 * (this.options.batch?.maxMessages ?? 0)) });
    } catch (cause) {
      throw new ConsumerError(`cannot start consumer ${durable} on stream ${stream}`, { cause });
    }
    const messages = this.messages;
    // Stopped while it was starting: ask it to close, without waiting here. nats.js queues the close behind the
    // messages, so it completes only once the loop below iterates; awaiting it first hung stop() for good.
    if (this.#stopping) void messages.close();
    const batch = this.options.batch;
    const loop =
      batch === undefined
        ? (async () => {
            for await (const msg of messages) if (!this.#ackedIrrelevant(msg)) await this.process(msg);
          })()
        : this.#batchLoop(messages, batch);
    if (inLoop) await loop;
    else this.loop = loop;
  }

  /** The durable's name (the inbox key). */
  get durable(): string {
    return this.options.durable;
  }

  /** How far behind the consumer is, from the server's consumer info (one request). */
  async lag(): Promise<ConsumerLag> {
    if (this.jsm === undefined) throw new ConsumerError(`consumer ${this.options.durable} is not started`);
    const info = await this.jsm.consumers.info(this.options.stream, this.options.durable);
    return { pending: info.num_pending, ackPending: info.num_ack_pending, redelivered: info.num_redelivered };
  }

  /** Stops pulling, lets the message in hand finish, and returns when the loop has ended. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.messages?.close();
    await this.loop;
    this.loop = undefined;
    this.messages = undefined;
    this.#stopping = false;
  }

  /** Takes a message, then whatever else arrives within `maxWaitMs` (up to `maxMessages`), and handles them together. */
  async #batchLoop(messages: ConsumerMessages, batch: BatchOptions): Promise<void> {
    const it = messages[Symbol.asyncIterator]();
    const waitMs = batch.maxWaitMs ?? 0;
    let next: Promise<IteratorResult<JsMsg>> | undefined;
    for (;;) {
      const first = await (next ?? it.next());
      next = undefined;
      if (first.done === true) return;
      const msgs = [first.value];
      const deadline = Date.now() + waitMs;
      let done = false;
      while (msgs.length < batch.maxMessages) {
        next ??= it.next();
        const remaining = deadline - Date.now();
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<"late">((resolve) => {
          if (remaining <= 0) setImmediate(() => resolve("late"));
          else timer = setTimeout(() => resolve("late"), remaining);
        });
        const r = await Promise.race([next, late]);
        clearTimeout(timer);
        if (r === "late") break; // `next` stays pending for the following batch
        next = undefined;
        if (r.done === true) {
          done = true;
          break;
        }
        msgs.push(r.value);
      }
      await this.processBatch(msgs, batch);
      if (done) return;
    }
  }

  /** One transaction (or one per tenant) for the inbox rows and handling of `msgs`; one by one where that fails. */
  private async processBatch(arrived: readonly JsMsg[], batch: BatchOptions): Promise<void> {
    const items: { msg: JsMsg; event: ConsumedEvent }[] = [];
    const copies: { msg: JsMsg; id: string }[] = [];
    const seen = new Set<string>();
    // What `relevant` refuses as it stands is acknowledged without its signature checked.
    const msgs = arrived.filter((msg) => !this.#ackedIrrelevant(msg));
    // Every signature of the batch checked at once, on the thread pool; then each message in order.
    const expected = { service: this.options.source, subjectPrefix: this.options.subjectPrefix };
    const checked = await Promise.all(
      msgs.map((msg) =>
        verifiedEnvelopeAsync(this.options.keys, { subject: msg.subject, data: msg.data, header: (name) => msg.headers?.get(name) || undefined }, expected).then(
          (envelope) => ({ envelope, err: undefined }),
          (err: unknown) => ({ envelope: undefined, err }),
        ),
      ),
    );
    for (const [i, msg] of msgs.entries()) {
      if (msg.redelivered) this.options.onRedelivered?.();
      const headers = headerRecord(msg);
      const { envelope, err } = checked[i]!;
      if (envelope === undefined) {
        await this.park(msg, undefined, headers, err);
        continue;
      }
      let payload: Message | undefined;
      try {
        payload = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, contractRegistry);
      } catch {
        await this.process(msg, false); // fails there, and is retried or parked as usual
        continue;
      }
      const event: ConsumedEvent = { envelope, payload, subject: msg.subject, headers };
      if (this.options.relevant?.(event) === false) {
        msg.ack();
        continue;
      }
      if (seen.has(envelope.id)) {
        copies.push({ msg, id: envelope.id });
        continue;
      }
      seen.add(envelope.id);
      items.push({ msg, event });
    }
    if (items.length === 0) {
      for (const c of copies) this.#ackDuplicate(c.msg, c.id);
      return;
    }
    // One transaction for the batch, or (parallelTenants > 1) one per tenant, several at once.
    const parallel = Math.max(1, Math.floor(batch.parallelTenants ?? 1));
    const groups = parallel === 1 ? [items] : [...groupBy(items, (i) => i.event.envelope.tenantId).values()];
    const failed = new Set<string>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < groups.length) {
        const group = groups[next++]!;
        let fresh: Set<string>;
        try {
          fresh = await tracer.startActiveSpan(
            `${this.options.durable} process batch`,
            { kind: SpanKind.CONSUMER, attributes: { "messaging.system": "nats", "messaging.batch.message_count": group.length } },
            async (span) => {
              try {
                return await runWithContext({ requestId: newRequestId() }, () => this.#handleBatchOnce(group.map((i) => i.event), batch));
              } catch (err) {
                span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
                throw err;
              } finally {
                span.end();
              }
            },
          );
        } catch (err) {
          this.logger.warn({ consumer: this.options.durable, events: group.length, err: describeError(err) }, "a batch failed; handling its events one by one");
          for (const { msg, event } of group) {
            failed.add(event.envelope.id);
            await this.process(msg, false);
          }
          continue;
        }
        for (const { msg, event } of group) {
          if (fresh.has(event.envelope.id)) msg.ack();
          else this.#ackDuplicate(msg, event.envelope.id);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, groups.length) }, worker));
    for (const c of copies) {
      if (failed.has(c.id)) await this.process(c.msg, false);
      else this.#ackDuplicate(c.msg, c.id);
    }
  }

  #ackDuplicate(msg: JsMsg, eventId: string): void {
    msg.ack();
    this.options.onDuplicate?.(eventId);
  }

  /** Inserts the inbox rows (each under its own tenant's scope) and runs the batch handler on the new events; returns their ids. */
  async #handleBatchOnce(events: readonly ConsumedEvent[], batch: BatchOptions): Promise<Set<string>> {
    return this.options.db.sql(async (sql) => {
      const groups = groupBy(events, (e) => (e.envelope.tenantId === "" ? (e.envelope.platform ? "\u0000platform" : "\u0000none") : e.envelope.tenantId));
      const fresh = new Set<string>();
      // A fixed order (scope, then id) so that two replicas' batches cannot deadlock on each other's inbox rows.
      for (const key of [...groups.keys()].sort()) {
        const group = [...groups.get(key)!].sort((a, b) => (a.envelope.id < b.envelope.id ? -1 : a.envelope.id > b.envelope.id ? 1 : 0));
        // The group's scope and its inbox rows in one round trip: every row comes out of a join with the
        // scoping CTE, so the scope is set before the first row reaches the insert (and its RLS check).
        // One text for any number of rows (ids as an array), so it is prepared once per connection.
        const first = group[0]!.envelope;
        const inserted = await sql.execute<{ event_id: string }[]>(
          `with scope as materialized (select set_config('app.platform', ?, true) as platform, set_config('app.tenant_id', ?, true) as tenant)
           insert into inbox (consumer, event_id, tenant_id)
           select ?, v.event_id, nullif(?, '') from scope, unnest(?::text[]) as v(event_id)
           on conflict do nothing returning event_id`,
          [first.tenantId === "" && first.platform ? "on" : "", first.tenantId, this.options.durable, first.tenantId, arrayLiteral(group.map((e) => e.envelope.id))],
        );
        for (const r of inserted) fresh.add(r.event_id);
      }
      const todo = events.filter((e) => fresh.has(e.envelope.id));
      if (todo.length > 0) await batch.handle(todo, sql);
      return fresh;
    });
  }

  /**
   * True when `relevant` refuses the message's event as it claims to be
   * (decoded, its signature not checked): it is then acknowledged here.
   * False when it must go through the usual check (no `relevant`, one that
   * accepts it, or bytes that are no event: those are parked there).
   */
  #ackedIrrelevant(msg: JsMsg): boolean {
    const relevant = this.options.relevant;
    if (relevant === undefined) return false;
    try {
      const envelope = fromBinary(EnvelopeSchema, msg.data);
      // The payload and headers only if `relevant` reads them (many decide from the envelope alone).
      let payload: { value: Message | undefined } | undefined;
      let headers: Record<string, string> | undefined;
      const event: ConsumedEvent = {
        envelope,
        get payload() {
          return (payload ??= { value: envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, contractRegistry) }).value;
        },
        subject: msg.subject,
        get headers() {
          return (headers ??= headerRecord(msg));
        },
      };
      if (relevant(event) !== false) return false;
    } catch {
      // Not an envelope, or a payload that does not unpack: the usual path parks or retries it.
      return false;
    }
    if (msg.redelivered) this.options.onRedelivered?.();
    msg.ack();
    return true;
  }

  private async process(msg: JsMsg, countRedelivery = true): Promise<void> {
    if (countRedelivery && msg.redelivered) this.options.onRedelivered?.();
    const headers = headerRecord(msg);
    let envelope: Envelope;
    try {
      // Anyone who reaches NATS can publish on a subject: handle only what the stream's owner signed.
      envelope = verifiedEnvelope(this.options.keys, { subject: msg.subject, data: msg.data, header: (name) => msg.headers?.get(name) || undefined }, { service: this.options.source, subjectPrefix: this.options.subjectPrefix });
    } catch (err) {
      await this.park(msg, undefined, headers, err);
      return;
    }
    const carrier = { traceparent: envelope.traceparent || headers["traceparent"] || "", tracestate: envelope.tracestate || headers["tracestate"] || "" };
    const parent = propagation.extract(ROOT_CONTEXT, carrier);
    await context.with(parent, () =>
      tracer.startActiveSpan(
        `${msg.subject} process`,
        { kind: SpanKind.CONSUMER, attributes: { "messaging.system": "nats", "messaging.destination.name": msg.subject, "messaging.message.id": envelope.id } },
        async (span) => {
          try {
            const payload = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, contractRegistry);
            const event: ConsumedEvent = { envelope, payload, subject: msg.subject, headers };
            if (this.options.relevant?.(event) !== false) await runWithContext(contextFromEnvelope(envelope), () => this.handleOnce(event));
            msg.ack();
          } catch (err) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
            await this.retryOrPark(msg, envelope, headers, err);
          } finally {
            span.end();
          }
        },
      ),
    );
  }

  /** Records the event in the inbox and runs the handler, in one transaction. */
  private async handleOnce(event: ConsumedEvent): Promise<void> {
    const { envelope } = event;
    const duplicate = await this.options.db.transaction(async (em) => {
      const inserted = (await em.execute(
        "insert into inbox (consumer, event_id, tenant_id) values (?, ?, ?) on conflict do nothing returning event_id",
        [this.options.durable, envelope.id, envelope.tenantId === "" ? null : envelope.tenantId],
      )) as unknown[];
      if (inserted.length === 0) return true;
      await this.options.handle(event, em);
      return false;
    });
    if (duplicate) this.options.onDuplicate?.(envelope.id);
  }

  private async retryOrPark(msg: JsMsg, envelope: Envelope, headers: Record<string, string>, err: unknown): Promise<void> {
    const deliveries = msg.info.deliveryCount;
    if (deliveries >= this.maxDeliver) {
      await this.park(msg, envelope, headers, err);
      return;
    }
    const delay = this.backoffMs[Math.min(deliveries - 1, this.backoffMs.length - 1)] ?? 0;
    this.logger.warn({ consumer: this.options.durable, eventId: envelope.id, deliveries, err: describeError(err) }, "event handler failed; will retry");
    msg.nak(delay);
  }

  /**
   * Stores the message in `parked_events` (platform scope: the table is read
   * across tenants by operators) and terminates it. If parking fails the
   * message is nak'ed so the server offers it again.
   */
  private async park(msg: JsMsg, envelope: Envelope | undefined, headers: Record<string, string>, err: unknown): Promise<void> {
    const eventId = envelope?.id || headers["Nats-Msg-Id"] || `seq_${msg.info.streamSequence}`;
    const error = describeError(err);
    try {
      await runAsPlatform("park a poison event for inspection", () =>
        this.options.db.transaction((em) =>
          em.execute(
            "insert into parked_events (consumer, event_id, tenant_id, subject, envelope, headers, error, deliveries) values (?, ?, ?, ?, ?, ?::jsonb, ?, ?)",
            [
              this.options.durable,
              eventId,
              envelope === undefined || envelope.tenantId === "" ? null : envelope.tenantId,
              msg.subject,
              Buffer.from(msg.data),
              JSON.stringify(headers),
              error,
              msg.info.deliveryCount,
            ],
          ),
        ),
      );
    } catch (parkErr) {
      this.logger.error({ consumer: this.options.durable, eventId, err: describeError(parkErr) }, "could not park event; will retry");
      msg.nak(this.backoffMs[this.backoffMs.length - 1]);
      return;
    }
    msg.term(error);
    this.logger.error({ consumer: this.options.durable, eventId, deliveries: msg.info.deliveryCount, err: error }, "event parked");
    this.options.onParked?.(eventId);
  }
}

/**
 * One subject goes in `filter_subject`, which every JetStream server
 * understands; several need `filter_subjects` (NATS 2.10 or later).
 */
function filterConfig(subjects: readonly string[]): { filter_subject: string } | { filter_subjects: string[] } {
  if (subjects.length === 0) throw new ConsumerError("a consumer needs at least one filter subject");
  return subjects.length === 1 ? { filter_subject: subjects[0]! } : { filter_subjects: [...subjects] };
}

/** `items` by `key`, each group in the order of `items`. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const g = out.get(k);
    if (g === undefined) out.set(k, [item]);
    else g.push(item);
  }
  return out;
}

function headerRecord(msg: JsMsg): Record<string, string> {
  const out: Record<string, string> = {};
  if (msg.headers === undefined) return out;
  for (const key of msg.headers.keys()) out[key] = msg.headers.get(key);
  return out;
}
