import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { currentContext, type MeshKeys } from "@bulwark/core";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { EnvelopeSchema, type Envelope } from "@bulwark/contracts";
import type { Statements } from "@bulwark/db";
import { buildEnvelope, headersFor } from "./envelope.js";
import { OutboxError } from "./errors.js";
import { signEnvelope } from "./signature.js";

const segment = /^[a-z0-9_-]+$/i;
const tracer = trace.getTracer("@bulwark/events");

/** A service's identity as an event source. */
export interface EventPublisherOptions {
  /** The publishing service, e.g. `tenancy`; the envelope's `source`. */
  readonly service: string;
  /** First subject token; `bulwark` in production, unique per test run in tests. */
  readonly subjectPrefix?: string;
  /** The service's own key: every envelope is signed with it, so consumers can tell it from a forgery. */
  readonly keys: MeshKeys;
}

/** One domain event to record: `<prefix>.<service>.<aggregate>.<verb>`. */
export interface PublishInput<Desc extends DescMessage> {
  readonly aggregate: string;
  readonly verb: string;
  readonly aggregateId: string;
  readonly schema: Desc;
  readonly payload: MessageShape<Desc>;
}

/** An outbox row ready to insert, for a caller that writes it inside a statement of its own. */
export interface PreparedEvent {
  readonly envelope: Envelope;
  /** The columns of `outbox`, in this order: id, tenant_id, subject, envelope, headers. */
  readonly values: readonly [string, string | null, string, Buffer, string];
}

/**
 * The outbox columns a `PreparedEvent`'s values fill, and the placeholders
 * for them. `created_at` is the statement's clock, not the transaction's
 * start, so the events of one transaction keep the order they were written
 * in (the relay publishes by created_at, then id).
 */
export const outboxInsert = { columns: "(id, tenant_id, subject, envelope, headers, created_at)", placeholders: "(?, ?, ?, ?, ?::jsonb, clock_timestamp())" } as const;

/**
 * Records domain events in the outbox through the caller's EntityManager, so
 * an event exists if and only if the state change that caused it commits.
 * Publishing to NATS is the relay's job; call `relay.nudge()` after commit
 * for low latency.
 */
export class EventPublisher {
  readonly service: string;
  readonly subjectPrefix: string;
  readonly #keys: MeshKeys;

  constructor(options: EventPublisherOptions) {
    for (const part of [options.service, ...(options.subjectPrefix ?? "bulwark").split(".")]) {
      if (!segment.test(part)) throw new OutboxError("service and subject prefix must be plain subject tokens");
    }
    this.service = options.service;
    this.subjectPrefix = options.subjectPrefix ?? "bulwark";
    if (options.keys.service !== options.service) throw new OutboxError("a service signs its events with its own key");
    this.#keys = options.keys;
  }

  /** The subject an aggregate's verb is published on. */
  subject(aggregate: string, verb: string): string {
    if (!segment.test(aggregate) || !segment.test(verb)) throw new OutboxError("aggregate and verb must be plain subject tokens");
    return `${this.subjectPrefix}.${this.service}.${aggregate}.${verb}`;
  }

  /**
   * Writes the event to the outbox inside `em`'s transaction (use the `em`
   * given by `Database.transaction`) and returns its envelope.
   */
  async publish<Desc extends DescMessage>(em: Statements, input: PublishInput<Desc>): Promise<Envelope> {
    const type = this.subject(input.aggregate, input.verb);
    // A producer span per event; the envelope carries its trace context, so
    // the consumer's span continues the trace of the request that caused it.
    return tracer.startActiveSpan(`publish ${type}`, { kind: SpanKind.PRODUCER, attributes: { "messaging.system": "nats", "messaging.destination.name": type } }, async (span) => {
      try {
        return await this.#record(em, input);
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw err;
      } finally {
        span.end();
      }
    });
  }

  /**
   * Builds an event's outbox row without writing it, for a caller that puts
   * it into a statement of its own (`insert into outbox ${outboxInsert.columns}
   * values ${outboxInsert.placeholders}`, a CTE of a larger write) to save a
   * round trip; that statement must run in the same transaction as the change.
   */
  prepare<Desc extends DescMessage>(input: PublishInput<Desc>): PreparedEvent {
    const envelope = buildEnvelope(this.service, currentContext(), {
      type: this.subject(input.aggregate, input.verb),
      aggregateId: input.aggregateId,
      schema: input.schema,
      payload: input.payload,
    });
    const bytes = toBinary(EnvelopeSchema, envelope);
    return {
      envelope,
      values: [envelope.id, envelope.tenantId === "" ? null : envelope.tenantId, envelope.type, Buffer.from(bytes), JSON.stringify({ ...headersFor(envelope), ...signEnvelope(this.#keys, bytes) })],
    };
  }

  async #record<Desc extends DescMessage>(em: Statements, input: PublishInput<Desc>): Promise<Envelope> {
    const { envelope, values } = this.prepare(input);
    try {
      await em.execute(`insert into outbox ${outboxInsert.columns} values ${outboxInsert.placeholders}`, [...values]);
    } catch (cause) {
      throw new OutboxError(`could not record event ${envelope.type}`, { cause });
    }
    return envelope;
  }
}
