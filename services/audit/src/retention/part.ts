import { createTenancyClient } from "@bulwark/contracts";
import { ConfigError } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { createServiceTransport, retentionCopyConsumer, type JobSpec } from "@bulwark/server";
import type { AuditContext } from "../context.js";
import type { AuditPart } from "../part.js";
import { retentionRoleOf } from "../retention-role.js";
import { applyRetention, type RetentionDeps } from "./retention.js";

/** The retention connection of one started service (opened at start, closed at stop). */
const opened = new WeakMap<AuditContext, RetentionDeps>();

export interface RetentionPartOptions {
  /** When the job runs (five-field cron, UTC); default daily at 03:17. */
  readonly cron?: string;
  /** Or a period in milliseconds (tests). */
  readonly everyMs?: number;
}

/**
 * The schedule from the environment, read when the jobs are built:
 * AUDIT_RETENTION_CRON (five-field cron, UTC; default daily at 03:17) or
 * AUDIT_RETENTION_EVERY_MS (a period, at least 1000; tests).
 */
function scheduleOf(options: RetentionPartOptions, env: NodeJS.ProcessEnv = process.env): { cron: string } | { everyMs: number } {
  if (options.everyMs !== undefined) return { everyMs: options.everyMs };
  if (options.cron !== undefined) return { cron: options.cron };
  const every = env["AUDIT_RETENTION_EVERY_MS"];
  if (every !== undefined && every !== "") {
    const n = Number(every);
    if (!Number.isInteger(n) || n < 1000) throw new ConfigError("invalid configuration: AUDIT_RETENTION_EVERY_MS: must be an integer of at least 1000");
    return { everyMs: n };
  }
  const cron = env["AUDIT_RETENTION_CRON"];
  if (cron !== undefined && cron !== "") {
    if (!/^(\S+\s+){4}\S+$/.test(cron.trim())) throw new ConfigError("invalid configuration: AUDIT_RETENTION_CRON: must be a five-field cron expression");
    return { cron: cron.trim() };
  }
  return { cron: "17 3 * * *" };
}

/**
 * Retention (retention.ts): a daily job on the shared scheduler, one replica
 * per run, removing each tenant's entries older than its retention
 * (compliance's audit-entries rule when customized and enabled, else
 * tenancy's audit_retention, default 2 years; nothing under a legal hold),
 * through the retention role.
 */
export function retentionPartWith(options: RetentionPartOptions = {}): AuditPart {
  return {
    name: "retention",
    entities: [],
    registrations: () => [],
    // The copy of compliance's retention rules and legal holds that retentionOf reads.
    consumers: (ctx) => [retentionCopyConsumer(ctx.deps.config.EVENTS_SUBJECT_PREFIX, "audit_retention_rules")],
    start: async (ctx) => {
      const config = ctx.deps.config;
      const retentionDb = await Database.open({ clientUrl: config.DATABASE_ADMIN_URL, schema: config.DATABASE_SCHEMA, entities: [], poolMax: 1 });
      opened.set(ctx, {
        db: ctx.deps.db,
        retentionDb,
        retentionRole: retentionRoleOf(config),
        tenancy: createTenancyClient(createServiceTransport(config.TENANCY_URL, ctx.deps.assertions, "tenancy")),
        events: ctx.deps.events,
        logger: ctx.deps.logger.child({ part: "retention" }),
      });
    },
    stop: async (ctx) => {
      await opened.get(ctx)?.retentionDb.close();
      opened.delete(ctx);
    },
    jobs: (ctx): JobSpec[] => [
      {
        name: "audit-retention",
        ...scheduleOf(options),
        timeoutMs: 30 * 60_000,
        runAsPlatform: "retention removes expired audit entries of every tenant",
        run: async (job) => {
          const deps = opened.get(ctx);
          if (deps === undefined) throw new Error("retention is not started");
          const r = await applyRetention(deps, job.now(), job.signal);
          return { ...r };
        },
      },
    ],
  };
}

export const retentionPart: AuditPart = retentionPartWith();
