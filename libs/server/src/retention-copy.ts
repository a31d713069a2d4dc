import { isMessage } from "@bufbuild/protobuf";
import { LegalHoldChangedSchema, RetentionCategory, RetentionRuleChangedSchema } from "@bulwark/contracts";
import { tenantIsolationSql, type EntityManager } from "@bulwark/db";
import type { ConsumedEvent } from "@bulwark/events";
import { streamOf, type ConsumerSpec } from "./runtime.js";

/**
 * The category names of compliance's retention rules as stored (compliance's
 * `retention_rules.category`, the categories legal holds name).
 */
const categoryNames: ReadonlyMap<RetentionCategory, RetainedCategory> = new Map([
  [RetentionCategory.AUDIT_ENTRIES, "audit_entries"],
  [RetentionCategory.SESSIONS, "sessions"],
  [RetentionCategory.INACTIVE_ACCOUNTS, "inactive_accounts"],
  [RetentionCategory.EXPORTS, "exports"],
]);

/** A data category with a compliance retention rule. */
export type RetainedCategory = "audit_entries" | "sessions" | "inactive_accounts" | "exports";

/**
 * The tables of a service's local copy of compliance's retention rules and
 * legal holds (`retention_rules`, `legal_holds`, in the service's own schema,
 * tenant-isolated like every tenant table), for its migration.
 */
export function retentionCopySql(): string[] {
  return [
    `create table retention_rules (
      tenant_id text not null,
      category text not null,
      period_s bigint not null,
      enabled boolean not null,
      updated_at timestamptz not null,
      primary key (tenant_id, category)
    )`,
    ...tenantIsolationSql("retention_rules"),
    `create table legal_holds (
      id text primary key,
      tenant_id text not null,
      category text not null,
      until_at timestamptz not null
    )`,
    "create index legal_holds_tenant_idx on legal_holds (tenant_id, category, until_at)",
    ...tenantIsolationSql("legal_holds"),
  ];
}

/** The down migration of `retentionCopySql`. */
export function retentionCopyDownSql(): string[] {
  return ["drop table if exists legal_holds", "drop table if exists retention_rules"];
}

/** The event types the copy follows. */
function copiedTypes(prefix: string): Set<string> {
  return new Set([`${prefix}.compliance.retention_rule.changed`, `${prefix}.compliance.legal_hold.created`, `${prefix}.compliance.legal_hold.deleted`]);
}

/**
 * The durable consumer that keeps a service's copy of compliance's rules and
 * holds (`retentionCopySql`): `bulwark.compliance.retention_rule.changed`
 * upserts the tenant's rule (an older change arriving late does not win
 * over a newer one), `legal_hold.created` / `.deleted` add and remove a
 * hold. Only envelopes signed by compliance are handled (the consumer
 * checks the stream's owner); the inbox makes a redelivery harmless. The
 * stream may not exist yet (compliance not started): it is waited for.
 * One filter (NATS before 2.10 has no multi-subject consumers), the rest of
 * compliance's events acknowledged at once.
 */
export function retentionCopyConsumer(prefix: string, durable: string): ConsumerSpec {
  const types = copiedTypes(prefix);
  return {
    stream: streamOf(prefix, "compliance").name,
    source: "compliance",
    durable,
    filterSubjects: [`${prefix}.compliance.>`],
    waitForStream: true,
    maxDeliver: 12,
    backoffMs: [1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000],
    ackWaitMs: 60_000,
    relevant: (event) => types.has(event.envelope.type),
    handle: (event, em) => copyEvent(event, em),
  };
}

async function copyEvent({ envelope, payload }: ConsumedEvent, em: EntityManager): Promise<void> {
  const tenantId = envelope.tenantId;
  if (tenantId === "") return;
  if (isMessage(payload, RetentionRuleChangedSchema)) {
    const rule = payload.rule;
    const category = rule === undefined ? undefined : categoryNames.get(rule.category);
    if (rule === undefined || category === undefined || rule.period === undefined) return;
    const updatedAt = rule.updateTime !== undefined ? new Date(Number(rule.updateTime.seconds) * 1000 + Math.floor(rule.updateTime.nanos / 1e6)) : new Date(0);
    await em.execute(
      `insert into retention_rules (tenant_id, category, period_s, enabled, updated_at) values (?, ?, ?, ?, ?)
       on conflict (tenant_id, category) do update set period_s = excluded.period_s, enabled = excluded.enabled, updated_at = excluded.updated_at
       where retention_rules.updated_at <= excluded.updated_at`,
      [tenantId, category, Number(rule.period.seconds), rule.enabled, updatedAt],
    );
    return;
  }
  if (isMessage(payload, LegalHoldChangedSchema)) {
    const hold = payload.hold;
    if (payload.id === "" || hold === undefined) return;
    if (envelope.type.endsWith(".legal_hold.deleted")) {
      await em.execute("delete from legal_holds where id = ?", [payload.id]);
      return;
    }
    if (hold.untilTime === undefined) return;
    const until = new Date(Number(hold.untilTime.seconds) * 1000);
    await em.execute("insert into legal_holds (id, tenant_id, category, until_at) values (?, ?, ?, ?) on conflict (id) do nothing", [payload.id, tenantId, hold.category, until]);
  }
}

/** A tenant's copied rule of one category; undefined while it follows compliance's default. */
export interface CopiedRule {
  readonly periodS: number;
  readonly enabled: boolean;
}

/** The copied rule of a category for the tenant in scope (row-level security picks the tenant). */
export async function copiedRule(em: EntityManager, category: RetainedCategory): Promise<CopiedRule | undefined> {
  const [row] = await em.execute<{ period_s: string; enabled: boolean }[]>("select period_s, enabled from retention_rules where category = ?", [category]);
  return row === undefined ? undefined : { periodS: Number(row.period_s), enabled: row.enabled };
}

/** The end of the latest copied legal hold on a category for the tenant in scope, if one is in force at `now`. */
export async function heldUntil(em: EntityManager, category: RetainedCategory, now: Date): Promise<Date | undefined> {
  const [row] = await em.execute<{ until_at: Date | null }[]>("select max(until_at) as until_at from legal_holds where category = ? and until_at > ?", [category, now]);
  return row === undefined || row.until_at === null ? undefined : new Date(row.until_at);
}
