import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuditRetentionAppliedSchema, type TenancyClient } from "@bulwark/contracts";
import { describeError, runAsPlatform, runAsService, runInTenant, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { copiedRule, heldUntil } from "@bulwark/server";

/** The retention a tenant gets when its policy names none (2 years). */
export const defaultRetentionSeconds = 2 * 365 * 24 * 3600;
/** The shortest retention a policy may set (90 days): nothing younger is ever looked at. */
export const minimumRetentionSeconds = 90 * 24 * 3600;

const partitionName = /^entries_y(\d{4})m(\d{2})$/;

export interface RetentionDeps {
  /** audit's runtime database (the app role): reads, and the retention event in the outbox. */
  readonly db: Database;
  /** A database connection whose login role may `SET ROLE` to the retention role (DATABASE_ADMIN_URL). */
  readonly retentionDb: Database;
  /** `<runtime role>_retention`. */
  readonly retentionRole: string;
  readonly tenancy: Pick<TenancyClient, "getSecurityPolicy">;
  readonly events: EventPublisher;
  readonly logger: Logger;
}

export interface RetentionRunResult {
  readonly tenants: number;
  readonly removed: number;
  readonly droppedPartitions: number;
  readonly failedTenants: number;
  /** Tenants skipped because a legal hold on their audit entries is in force. */
  readonly heldTenants: number;
}

interface TenantPlan {
  readonly tenantId: string;
  readonly retentionSeconds: number;
  readonly cutoff: Date;
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** The months [start, end) of an `entries_yYYYYmMM` partition. */
function monthOf(name: string): { start: Date; end: Date } | undefined {
  const m = partitionName.exec(name);
  if (!m) return undefined;
  const y = Number(m[1]);
  const mo = Number(m[2]) - 1;
  return { start: new Date(Date.UTC(y, mo, 1)), end: new Date(Date.UTC(y, mo + 1, 1)) };
}

/**
 * One run of the retention job: every tenant with entries older than the
 * shortest allowed retention gets its retention (`retentionOf`: compliance's
 * rule when customized and enabled, else tenancy's policy, default 2 years;
 * nothing under a legal hold); a monthly partition in which every tenant's entries expired is
 * dropped whole, otherwise the tenant's expired rows are deleted. Both as
 * the retention role, the only one the append-only trigger lets through.
 * `leaves` (leaf hashes), `tree_nodes` and `checkpoints` are kept, so every
 * remaining entry still proves its inclusion in every signed size. Each
 * tenant that lost entries gets an `audit.retention.applied` event, which
 * audit records in that tenant's own trail.
 */
export async function applyRetention(deps: RetentionDeps, now: Date, signal?: AbortSignal): Promise<RetentionRunResult> {
  const horizon = new Date(now.getTime() - minimumRetentionSeconds * 1000);
  const candidates = await runAsPlatform("retention finds tenants with old audit entries", () =>
    deps.db.transaction((em) => em.execute<{ tenant_id: string }[]>("select distinct tenant_id from leaves where recorded_at < ?", [horizon])),
  );
  const plans = new Map<string, TenantPlan>();
  let failedTenants = 0;
  let heldTenants = 0;
  for (const { tenant_id: tenantId } of candidates) {
    if (signal?.aborted) break;
    try {
      const retentionSeconds = await retentionOf(deps, tenantId, now);
      if (retentionSeconds === undefined) {
        heldTenants++;
        continue;
      }
      plans.set(tenantId, { tenantId, retentionSeconds, cutoff: new Date(now.getTime() - retentionSeconds * 1000) });
    } catch (err) {
      failedTenants++;
      deps.logger.warn({ tenantId, err: describeError(err) }, "retention skipped a tenant: its policy could not be read");
    }
  }

  // Whole partitions first: those wholly before the horizon whose every tenant's entries expired.
  const dropped: string[] = [];
  const removedByDrop = new Map<string, number>();
  const partitions = await runAsPlatform("retention lists audit partitions", () =>
    deps.retentionDb.transaction(async (em) => {
      await em.execute(`set local role ${quoteIdent(deps.retentionRole)}`);
      return em.execute<{ name: string }[]>(
        "select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'entries'::regclass order by c.relname",
      );
    }),
  );
  for (const { name } of partitions) {
    if (signal?.aborted) break;
    const month = monthOf(name);
    if (!month || month.end > horizon) continue;
    const done = await runAsPlatform("retention drops an expired audit partition", () =>
      deps.retentionDb.transaction(async (em) => {
        await em.execute(`set local role ${quoteIdent(deps.retentionRole)}`);
        const tenants = await em.execute<{ tenant_id: string; n: string }[]>(`select tenant_id, count(*) as n from ${quoteIdent(name)} group by tenant_id`);
        if (!tenants.every((t) => plans.has(t.tenant_id) && plans.get(t.tenant_id)!.cutoff >= month.end)) return undefined;
        await em.execute("select audit_drop_partition(?)", [name]);
        return tenants;
      }),
    );
    if (done === undefined) continue;
    dropped.push(name);
    for (const t of done) removedByDrop.set(t.tenant_id, (removedByDrop.get(t.tenant_id) ?? 0) + Number(t.n));
  }

  let removed = 0;
  let tenants = 0;
  for (const plan of plans.values()) {
    if (signal?.aborted) break;
    try {
      const deleted = await runInTenant(plan.tenantId, () =>
        deps.retentionDb.transaction(async (em) => {
          await em.execute(`set local role ${quoteIdent(deps.retentionRole)}`);
          const rows = await em.execute<{ n: string }[]>("with d as (delete from entries where tenant_id = ? and recorded_at < ? returning 1) select count(*) as n from d", [plan.tenantId, plan.cutoff]);
          return Number(rows[0]?.n ?? 0);
        }),
      );
      const total = deleted + (removedByDrop.get(plan.tenantId) ?? 0);
      if (total === 0) continue;
      removed += total;
      tenants++;
      await recordRun(deps, plan, total, dropped);
    } catch (err) {
      failedTenants++;
      deps.logger.warn({ tenantId: plan.tenantId, err: describeError(err) }, "retention failed for a tenant; the next run retries");
    }
  }
  return { tenants, removed, droppedPartitions: dropped.length, failedTenants, heldTenants };
}

/**
 * A tenant's audit retention, or undefined when nothing may be removed now.
 * Which rule wins: compliance's audit-entries retention rule when the tenant
 * customized and enabled it (audit's copy from
 * `compliance.retention_rule.changed`); otherwise tenancy's SecurityPolicy
 * `audit_retention` (default 2 years), as before compliance had rules. Never
 * below 90 days. A legal hold on `audit_entries` in force (audit's copy from
 * `compliance.legal_hold.*`) removes nothing of the tenant until it ends,
 * whichever rule applies.
 */
async function retentionOf(deps: RetentionDeps, tenantId: string, now: Date): Promise<number | undefined> {
  const local = await runInTenant(tenantId, () =>
    deps.db.transaction(async (em) => ({ rule: await copiedRule(em, "audit_entries"), held: await heldUntil(em, "audit_entries", now) })),
  );
  if (local.held !== undefined) return undefined;
  if (local.rule?.enabled === true) return Math.max(local.rule.periodS, minimumRetentionSeconds);
  // A deleted tenant's trail that a legal hold kept has no policy any more: the default applies once the hold ends.
  const policy = await runAsService("audit", tenantId, () => deps.tenancy.getSecurityPolicy({ tenantId })).then(
    (r) => r.policy,
    (err: unknown) => {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw err;
    },
  );
  const seconds = Number(policy?.auditRetention?.seconds ?? 0n);
  return seconds > 0 ? Math.max(seconds, minimumRetentionSeconds) : defaultRetentionSeconds;
}

/** The retention event, in the tenant's outbox (audit records it in the tenant's trail). */
async function recordRun(deps: RetentionDeps, plan: TenantPlan, removed: number, dropped: readonly string[]): Promise<void> {
  await runInTenant(plan.tenantId, () =>
    deps.db.transaction(async (em: EntityManager) => {
      const [row] = await em.execute<{ last: string | null }[]>("select max(leaf_index) as last from leaves where tenant_id = ? and recorded_at < ?", [plan.tenantId, plan.cutoff]);
      await deps.events.publish(em, {
        aggregate: "retention",
        verb: "applied",
        aggregateId: plan.tenantId,
        schema: AuditRetentionAppliedSchema,
        payload: create(AuditRetentionAppliedSchema, {
          removedCount: BigInt(removed),
          lastExpiredIndex: BigInt(row?.last ?? 0),
          cutoffTime: timestampFromDate(plan.cutoff),
          retentionSeconds: BigInt(plan.retentionSeconds),
          droppedPartitions: [...dropped],
        }),
      });
    }),
  );
}
