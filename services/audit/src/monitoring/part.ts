import { jetstreamManager } from "@nats-io/jetstream";
import { file_bulwark_audit_v1_monitoring_service, MonitoringService } from "@bulwark/contracts";
import { runWithContext } from "@bulwark/core";
import { contextFromEnvelope, scopeToEvent } from "@bulwark/events";
import { streamOf, type ConsumerSpec } from "@bulwark/server";
import type { AuditContext } from "../context.js";
import type { AuditPart } from "../part.js";
import { registration } from "../registration.js";
import { Monitor } from "./monitor.js";
import { MonitoringServiceImpl } from "./monitoring-service.js";

/** The streams whose events the rules watch (audit's own is left out: alerts do not raise alerts). */
export const monitoredSources = ["tenancy", "identity", "keys", "compliance"];

const present = new WeakMap<AuditContext, Set<string>>();

/**
 * Monitoring (rules.ts, monitor.ts): one durable consumer per watched
 * stream (`audit-monitor-<service>`), separate from the trail's own, so a
 * rule's state never delays or blocks recording. A stream that does not
 * exist when audit starts is watched from audit's next start.
 * MonitoringService reads and changes each tenant's settings.
 */
export const monitoringPart: AuditPart = {
  name: "monitoring",
  entities: [],
  registrations: (ctx) => [registration(MonitoringService, file_bulwark_audit_v1_monitoring_service, new MonitoringServiceImpl(ctx))],
  start: async (ctx) => {
    const jsm = await jetstreamManager(ctx.deps.nc);
    const found = new Set<string>();
    for (const service of monitoredSources) {
      const name = streamOf(ctx.deps.config.EVENTS_SUBJECT_PREFIX, service).name;
      if (await jsm.streams.info(name).then(() => true, () => false)) found.add(service);
    }
    present.set(ctx, found);
  },
  consumers: (ctx): ConsumerSpec[] => {
    const prefix = ctx.deps.config.EVENTS_SUBJECT_PREFIX;
    const monitor = new Monitor(prefix, ctx.privacy, ctx.deps.events);
    const found = present.get(ctx) ?? new Set(monitoredSources);
    return monitoredSources
      .filter((s) => found.has(s))
      .map((service) => ({
        stream: streamOf(prefix, service).name,
        source: service,
        durable: `audit-monitor-${service}`,
        filterSubjects: [`${prefix}.${service}.>`],
        maxDeliver: 20,
        backoffMs: [500, 2_000, 10_000, 30_000],
        // Most events concern no rule: acknowledged without a transaction (or their signature checked), so they
        // do not compete with recording.
        relevant: (event) => monitor.relevant(event),
        handle: (event, em) => monitor.handle(event, em),
        // Under load, what has arrived is taken together: the refused acknowledged at once, the rest in one
        // transaction, each event's rules under its own tenant's scope and call context (an alert it raises is
        // published as the one-by-one path publishes it), in stream order.
        batch: {
          maxMessages: 500,
          maxWaitMs: 5,
          handle: async (events, sql) => {
            for (const event of events) {
              await scopeToEvent(sql, event.envelope);
              await runWithContext(contextFromEnvelope(event.envelope), () => monitor.handle(event, sql));
            }
          },
        },
      }));
  },
};
