import { describeError } from "@bulwark/core";
import { jetstreamManager } from "@nats-io/jetstream";
import { EventConsumer } from "@bulwark/events";
import { streamOf, type ConsumerSpec } from "@bulwark/server";
import type { AuditEntry } from "@bulwark/contracts";
import type { AuditContext } from "../context.js";
import type { AuditPart } from "../part.js";
import { entryOf, platformTenant } from "./mapping.js";
import { Recorder } from "./recorder.js";
import { auditSources, type AuditSource } from "./sources.js";

/** The streams found at start, per started service (consumers are built after `start`). */
const present = new WeakMap<AuditContext, Set<string>>();
/** What watches for the streams missing at start, per started service. */
const watchers = new WeakMap<AuditContext, { timer: NodeJS.Timeout | undefined; consumers: EventConsumer[]; stopped: boolean }>();
const watchIntervalMs = 5_000;
/** Events recorded in one transaction at most (13 parameters an entry, far below Postgres's limit). */
const batchMaxMessages = 500;
/**
 * Tenants of a batch recorded at once, each in a transaction of its own
 * (its inbox rows, entries and tree under its lock), on as many connections
 * of the pool: the round trips of one tenant overlap another's.
 */
const batchParallelTenants = 4;
/** How long a batch waits for more events once one has arrived. */
const batchMaxWaitMs = 5;

/**
 * One durable consumer per source stream (`audit-trail-<service>`): each
 * event, its envelope checked to be signed by the stream's owner, becomes
 * exactly one entry (the consumer's inbox row and the entry commit in one
 * transaction, so a redelivery after a crash, or after audit was down,
 * records nothing twice). Streams that do not exist yet are skipped.
 */
export function ingestPartWith(sources: readonly AuditSource[]): AuditPart {
  return {
    name: "ingest",
    entities: [],
    registrations: () => [],
    start: async (ctx) => {
      const jsm = await jetstreamManager(ctx.deps.nc);
      const found = new Set<string>();
      for (const s of sources) {
        const name = streamOf(ctx.deps.config.EVENTS_SUBJECT_PREFIX, s.service).name;
        const exists = await jsm.streams.info(name).then(
          () => true,
          () => false,
        );
        if (exists) found.add(s.service);
        else ctx.deps.logger.info({ stream: name }, "a source stream does not exist yet; it is recorded from its start once it appears");
      }
      present.set(ctx, found);
      // Streams that appear later (a service deployed after audit) get their consumer then, from their first event.
      const missing = sources.filter((s) => !found.has(s.service));
      const watch = { timer: undefined as NodeJS.Timeout | undefined, consumers: [] as EventConsumer[], stopped: false };
      watchers.set(ctx, watch);
      if (missing.length === 0) return;
      const tick = async (): Promise<void> => {
        for (const s of [...missing]) {
          const name = streamOf(ctx.deps.config.EVENTS_SUBJECT_PREFIX, s.service).name;
          if (!(await jsm.streams.info(name).then(() => true, () => false))) continue;
          const d = ctx.deps;
          const consumer = new EventConsumer({ ...specsOf(ctx, [s])[0]!, db: d.db, nc: d.nc, js: d.js, logger: d.logger, keys: d.keys, subjectPrefix: d.config.EVENTS_SUBJECT_PREFIX });
          try {
            await consumer.start();
          } catch (err) {
            d.logger.warn({ stream: name, err: describeError(err) }, "cannot start the consumer of a new source stream yet; retrying");
            continue;
          }
          if (watch.stopped) {
            await consumer.stop();
            return;
          }
          watch.consumers.push(consumer);
          missing.splice(missing.indexOf(s), 1);
          d.logger.info({ stream: name }, "recording a source stream that appeared");
        }
      };
      const loop = (): void => {
        watch.timer = setTimeout(() => {
          void tick().finally(() => {
            if (!watch.stopped && missing.length > 0) loop();
          });
        }, watchIntervalMs).unref();
      };
      loop();
    },
    stop: async (ctx) => {
      const watch = watchers.get(ctx);
      if (watch === undefined) return;
      watch.stopped = true;
      clearTimeout(watch.timer);
      for (const c of watch.consumers) await c.stop();
    },
    consumers: (ctx) => {
      const found = present.get(ctx) ?? new Set(sources.map((s) => s.service));
      return specsOf(
        ctx,
        sources.filter((s) => found.has(s.service)),
      );
    },
  };
}

/** The consumer of each source: `audit-trail-<service>` on the service's stream, checked to be signed by it. */
function specsOf(ctx: AuditContext, sources: readonly AuditSource[]): ConsumerSpec[] {
  const recorder = new Recorder(ctx.tree);
  const prefix = ctx.deps.config.EVENTS_SUBJECT_PREFIX;
  return sources.map(
    (s): ConsumerSpec => ({
      stream: streamOf(prefix, s.service).name,
      source: s.service,
      durable: `audit-trail-${s.service}`,
      filterSubjects: [`${prefix}.${s.service}.>`],
      maxDeliver: 20,
      backoffMs: [500, 2_000, 10_000, 30_000],
      handle: async ({ envelope, payload }, em) => {
        const tenantId = envelope.tenantId === "" ? platformTenant : envelope.tenantId;
        const entry = await entryOf(envelope, payload, prefix, ctx.privacy, tenantId);
        try {
          // Platform-wide events go to the platform's own log, a pseudo-tenant under the same isolation.
          if (tenantId === platformTenant) await em.execute("select set_config('app.tenant_id', ?, true)", [platformTenant]);
          await recorder.append(em, entry);
        } catch (err) {
          ctx.deps.logger.warn({ eventId: envelope.id, err: describeError(err) }, "recording an event failed; it is redelivered");
          throw err;
        }
      },
      // Under load the events that have arrived are recorded together: each
      // tenant's in a transaction of its own (up to batchParallelTenants at
      // once), their seals in one EncryptBatch, their entries under one take
      // of its tree lock, in stream order. A failing tenant's events fall
      // back to `handle` above, one event at a time.
      batch: {
        maxMessages: batchMaxMessages,
        maxWaitMs: batchMaxWaitMs,
        parallelTenants: batchParallelTenants,
        handle: async (events, sql) => {
          const tenants = events.map(({ envelope }) => (envelope.tenantId === "" ? platformTenant : envelope.tenantId));
          // Asked for all at once: Privacy sends the seals of one tick to keys as one EncryptBatch per tenant.
          const entries = await Promise.all(events.map(({ envelope, payload }, i) => entryOf(envelope, payload, prefix, ctx.privacy, tenants[i]!)));
          const byTenant = new Map<string, AuditEntry[]>();
          entries.forEach((entry, i) => {
            const list = byTenant.get(tenants[i]!);
            if (list === undefined) byTenant.set(tenants[i]!, [entry]);
            else list.push(entry);
          });
          try {
            // A fixed tenant order, so that two replicas' batches never wait on each other's tree locks in a cycle
            // (appendMany scopes the transaction to each tenant in turn).
            for (const tenantId of [...byTenant.keys()].sort()) {
              await recorder.appendMany(sql, tenantId, byTenant.get(tenantId)!);
            }
          } catch (err) {
            ctx.deps.logger.warn({ events: events.length, err: describeError(err) }, "recording a batch of events failed; they are recorded one by one");
            throw err;
          }
        },
      },
    }),
  );
}

/** Every source of `auditSources`. */
export const ingestPart: AuditPart = ingestPartWith(auditSources);
