import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RetentionCategory, RetentionRuleSchema, type RetentionRule } from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";

const day = 86_400;

/** A category's column value, default and allowed range (seconds). */
export interface CategorySpec {
  readonly name: "audit_entries" | "sessions" | "inactive_accounts" | "exports";
  readonly defaultS: number;
  /** Enforced by default? Deleting accounts is opt-in. */
  readonly defaultEnabled: boolean;
  readonly minS: number;
  readonly maxS: number;
}

/** Every category with a retention rule, in enum order. */
export const categories: ReadonlyMap<RetentionCategory, CategorySpec> = new Map([
  [RetentionCategory.AUDIT_ENTRIES, { name: "audit_entries", defaultS: 730 * day, defaultEnabled: true, minS: 90 * day, maxS: 3650 * day }],
  [RetentionCategory.SESSIONS, { name: "sessions", defaultS: 90 * day, defaultEnabled: true, minS: day, maxS: 400 * day }],
  [RetentionCategory.INACTIVE_ACCOUNTS, { name: "inactive_accounts", defaultS: 365 * day, defaultEnabled: false, minS: 60 * day, maxS: 3650 * day }],
  [RetentionCategory.EXPORTS, { name: "exports", defaultS: 7 * day, defaultEnabled: true, minS: day, maxS: 30 * day }],
]);

/** How long before deletion an inactive user is warned, and the grace they get. */
export const inactiveGraceS = 30 * day;

/** A retention_rules row. */
export interface RuleRow {
  tenant_id: string;
  category: CategorySpec["name"];
  period_s: string | number;
  enabled: boolean;
  updated_at: Date;
  updated_by: string;
}

/** The rule of a category: the tenant's row, or the default. */
export function ruleToProto(category: RetentionCategory, row: RuleRow | undefined): RetentionRule {
  const spec = categories.get(category)!;
  return create(RetentionRuleSchema, {
    category,
    period: durationFromMs((row === undefined ? spec.defaultS : Number(row.period_s)) * 1000),
    enabled: row?.enabled ?? spec.defaultEnabled,
    customized: row !== undefined,
    ...(row !== undefined ? { updateTime: timestampFromDate(new Date(row.updated_at)), updatedBy: row.updated_by } : {}),
  });
}

/** Every rule of the tenant in scope, defaults filled in. */
export async function rulesOf(em: EntityManager): Promise<RetentionRule[]> {
  const rows = await em.execute<RuleRow[]>("select * from retention_rules");
  return [...categories].map(([c, spec]) => ruleToProto(c, rows.find((r) => r.category === spec.name)));
}

/**
 * The rule of one category for the tenant in scope (compliance's exports
 * and the other parts read it to enforce their category).
 */
export async function retentionRule(em: EntityManager, category: RetentionCategory): Promise<RetentionRule> {
  const spec = categories.get(category)!;
  const row = (await em.execute<RuleRow[]>("select * from retention_rules where category = ?", [spec.name]))[0];
  return ruleToProto(category, row);
}
