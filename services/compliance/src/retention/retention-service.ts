import type { ServiceImpl } from "@connectrpc/connect";
import { RetentionCategory, RetentionRuleChangedSchema, type RetentionService, type SetRetentionRuleRequest } from "@bulwark/contracts";
import { invalidArgument } from "@bulwark/core";
import type { ComplianceContext } from "../context.js";
import { callerId, tenantOfCall } from "../posture/mesh.js";
import { inactiveToProto, type InactiveRow } from "./inactive-accounts.js";
import { categories, ruleToProto, rulesOf, type RuleRow } from "./rules.js";

/** bulwark.compliance.v1.RetentionService: the tenant's retention rules and the accounts the inactive-account rule acted on. */
export class RetentionServiceImpl implements ServiceImpl<typeof RetentionService> {
  constructor(private readonly ctx: ComplianceContext) {}

  async listRetentionRules() {
    tenantOfCall();
    return { rules: await this.ctx.deps.db.transaction((em) => rulesOf(em)) };
  }

  async setRetentionRule(req: SetRetentionRuleRequest) {
    const tenantId = tenantOfCall();
    const spec = categories.get(req.category);
    if (spec === undefined || req.category === RetentionCategory.UNSPECIFIED) throw invalidArgument("category", "must name a data category");
    if (req.period === undefined) throw invalidArgument("period", "is required");
    const periodS = Number(req.period.seconds);
    if (periodS < spec.minS || periodS > spec.maxS) throw invalidArgument("period", `must be between ${spec.minS / 86_400} and ${spec.maxS / 86_400} days for ${spec.name}`);
    const by = callerId();
    const now = this.ctx.clock();
    const rule = await this.ctx.deps.db.transaction(async (em) => {
      const row = (
        await em.execute<RuleRow[]>(
          `insert into retention_rules (tenant_id, category, period_s, enabled, updated_at, updated_by) values (?, ?, ?, ?, ?, ?)
           on conflict (tenant_id, category) do update set period_s = excluded.period_s, enabled = excluded.enabled, updated_at = excluded.updated_at, updated_by = excluded.updated_by
           returning *`,
          [tenantId, spec.name, periodS, req.enabled, now, by],
        )
      )[0]!;
      const message = ruleToProto(req.category, row);
      // A shorter exports rule shortens the bundles already waiting for download too (never lengthens them).
      if (req.category === RetentionCategory.EXPORTS && req.enabled) {
        await em.execute("update dsr_requests set export_expires_at = least(export_expires_at, export_created_at + make_interval(secs => ?)) where export_bundle is not null and export_created_at is not null", [periodS]);
      }
      await this.ctx.deps.events.publish(em, { aggregate: "retention_rule", verb: "changed", aggregateId: spec.name, schema: RetentionRuleChangedSchema, payload: { $typeName: RetentionRuleChangedSchema.typeName, rule: message } });
      return message;
    });
    this.ctx.deps.relay.nudge();
    return { rule };
  }

  async listInactiveAccounts(req: { includeSettled: boolean }) {
    tenantOfCall();
    const rows = await this.ctx.deps.db.transaction((em) =>
      em.execute<InactiveRow[]>(`select * from inactive_accounts ${req.includeSettled ? "" : "where state = 'warned'"} order by delete_at, user_id limit 1000`),
    );
    return { accounts: rows.map(inactiveToProto) };
  }
}
