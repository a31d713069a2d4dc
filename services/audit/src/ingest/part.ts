import { describeError } from "@bulwark/core";
import { jetstreamManager } from "@nats-io/jetstream";
import { streamOf, type ConsumerSpec } from "@bulwark/server";
import type { AuditContext } from "../context.js";
import type { AuditPart } from "../part.js";
import { entryOf, platformTenant } from "./mapping.js";
import { Recorder } from "./recorder.js";
import { auditSources, type AuditSource } from "./sources.js";

/** The streams found at start, per started service (consumers are built after `start`). */
const present = new WeakMap<AuditContext, Set<string>>();

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
        else ctx.deps.logger.warn({ stream: name }, "a source stream does not exist yet; its events are recorded once audit restarts after it appears");
      }
      present.set(ctx, found);
    },
    consumers: (ctx) => {
      const found = present.get(ctx) ?? new Set(sources.map((s) => s.service));
      const recorder = new Recorder(ctx.tree);
      const prefix = ctx.deps.config.EVENTS_SUBJECT_PREFIX;
      return sources
        .filter((s) => found.has(s.service))
        .map(
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
          }),
        );
    },
  };
}

/** Every source of `auditSources`. */
export const ingestPart: AuditPart = ingestPartWith(auditSources);
