import { file_bulwark_compliance_v1_retention_service, RetentionService } from "@bulwark/contracts";
import { describeError } from "@bulwark/core";
import type { JobSpec } from "@bulwark/server";
import type { ComplianceContext } from "../context.js";
import type { CompliancePart } from "../part.js";
import { registration } from "../registration.js";
import { runInactiveAccountRule } from "./inactive-accounts.js";
import { Migration20261221120000 } from "./Migration20261221120000.js";
import { RetentionServiceImpl } from "./retention-service.js";

/**
 * The inactive-account rule's job: once an hour, one replica runs the rule
 * in every tenant that enabled it (found in compliance's own rules, in its
 * platform scope), at the scheduler's clock. Idempotent: a warning or a
 * deletion is recorded once per account, so a repeated or taken-over run
 * does nothing twice.
 */
export function inactiveAccountsJob(ctx: ComplianceContext): JobSpec {
  return {
    name: "retention_inactive_accounts",
    everyMs: 3_600_000,
    timeoutMs: 30 * 60_000,
    runAsPlatform: "compliance applies every tenant's inactive-account retention rule",
    async run(job) {
      const tenants = await ctx.deps.db.transaction((em) => em.execute<{ tenant_id: string; period_s: string }[]>("select tenant_id, period_s from retention_rules where category = 'inactive_accounts' and enabled"));
      const totals = { tenants: 0, warned: 0, kept: 0, deleted: 0, failed: 0 };
      for (const t of tenants) {
        if (job.signal.aborted) break;
        try {
          const c = await runInactiveAccountRule(ctx, t.tenant_id, Number(t.period_s), job.now(), job.logger);
          totals.tenants++;
          totals.warned += c.warned;
          totals.kept += c.kept;
          totals.deleted += c.deleted;
        } catch (err) {
          totals.failed++;
          job.logger.warn({ tenantId: t.tenant_id, err: describeError(err) }, "the inactive-account rule did not finish for a tenant; next period continues");
        }
      }
      return totals;
    },
  };
}

/** Retention rules per tenant and category (RetentionService) and the inactive-account rule's job. */
export const retentionPart: CompliancePart = {
  name: "retention",
  entities: [],
  migrations: [{ name: "Migration20261221120000", class: Migration20261221120000 }],
  registrations: (ctx) => [registration(RetentionService, file_bulwark_compliance_v1_retention_service, new RetentionServiceImpl(ctx))],
  jobs: (ctx) => [inactiveAccountsJob(ctx)],
};
