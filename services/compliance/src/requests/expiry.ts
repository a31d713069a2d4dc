import type { RetentionRule } from "@bulwark/contracts";
import { runAsPlatform } from "@bulwark/core";
import type { ComplianceContext } from "../context.js";
import { publishChange, requestColumns, type RequestRow } from "./store.js";

/**
 * How long a new export bundle may be downloaded: COMPLIANCE_EXPORT_TTL_HOURS
 * is the platform's upper bound (and the lifetime when the tenant's exports
 * retention rule is disabled); an enabled rule with a shorter period wins.
 */
export function exportLifetimeMs(ttlHours: number, rule: Pick<RetentionRule, "enabled" | "period">): number {
  const ttlMs = ttlHours * 3_600_000;
  if (!rule.enabled || rule.period === undefined) return ttlMs;
  return Math.min(ttlMs, Number(rule.period.seconds) * 1000);
}

/**
 * Deletes the bundles of exports whose download window ended (a job of the
 * shared scheduler; tests call it with an injected clock) and records
 * request.export_deleted for each. Idempotent: a deleted bundle is not
 * found again.
 */
export async function expireExports(ctx: ComplianceContext): Promise<number> {
  const now = ctx.clock();
  const n = await runAsPlatform("deleting expired data-subject export bundles", () =>
    ctx.deps.db.transaction(async (em) => {
      const rows = await em.execute<RequestRow[]>(
        `update dsr_requests set export_bundle = null where id in (select id from dsr_requests where export_bundle is not null and export_expires_at <= ? for update skip locked limit 1000) returning ${requestColumns}`,
        [now],
      );
      for (const r of rows) await publishChange(em, ctx.deps.events, "export_deleted", r, r.state);
      return rows.length;
    }),
  );
  if (n > 0) ctx.deps.relay.nudge();
  return n;
}
