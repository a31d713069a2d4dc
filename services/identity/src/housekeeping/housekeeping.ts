import type { Database } from "@bulwark/db";
import type { JobContext, JobSpec } from "@bulwark/server";
import { SignInThrottle } from "../auth/throttle.js";

/** Rows deleted per statement: each batch is one short transaction, so housekeeping never holds locks for long. */
export const housekeepingBatch = 1_000;
/** Batches per table and run at most; what is left goes in the next run. */
const maxBatchesPerTable = 50;
/**
 * How long past its expiry a row stays: covers clock skew between replicas,
 * so no replica still honours (or detects the reuse of) what is deleted.
 */
const expiredGrace = "interval '1 hour'";

/**
 * What housekeeping deletes, one table at a time, each a bounded and
 * idempotent statement over rows that nothing can use any more:
 * expired single-use tokens and challenges (used or not), and expired
 * operator sessions with nothing left pointing at them. Live rows —
 * unexpired, even when used, since a used refresh token is what detects
 * its reuse — are never touched. User sessions follow the tenant's
 * sessions retention rule (`purgeRetainedSessions`).
 */
export const housekeepingTargets: readonly { readonly table: string; readonly key: string; readonly expired: string }[] = [
  { table: "refresh_tokens", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  { table: "mfa_challenges", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  { table: "webauthn_challenges", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  { table: "password_reset_tokens", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  { table: "email_change_tokens", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  { table: "operator_mfa_challenges", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  { table: "operator_refresh_tokens", key: "hash", expired: `expires_at < now() - ${expiredGrace}` },
  // Refresh tokens reference their session without a cascade: a session goes once its tokens have.
  {
    table: "operator_sessions",
    key: "id",
    expired: `expires_at < now() - ${expiredGrace} and not exists (select 1 from operator_refresh_tokens r where r.session_id = operator_sessions.id)`,
  },
];

/**
 * Deletes one table's expired rows in batches of `housekeepingBatch`
 * (the predicate is checked again on each row deleted); stops early when
 * the run is aborted. Runs in the caller's scope: the platform scope, where
 * row-level security shows every tenant's rows.
 */
async function purge(db: Database, target: (typeof housekeepingTargets)[number], signal: AbortSignal): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < maxBatchesPerTable && !signal.aborted; i++) {
    const rows = await db.transaction((em) =>
      em.execute<unknown[]>(
        `delete from ${target.table} where ${target.key} in (select ${target.key} from ${target.table} where ${target.expired} limit ?) and ${target.expired} returning 1`,
        [housekeepingBatch],
      ),
    );
    deleted += rows.length;
    if (rows.length < housekeepingBatch) break;
  }
  return deleted;
}

/** The sessions rule a tenant gets until compliance says otherwise (compliance's default: 90 days, enforced). */
export const defaultSessionRetentionS = 90 * 86_400;

/**
 * The sessions retention rule (compliance's RETENTION_CATEGORY_SESSIONS, in
 * identity's copy `retention_rules`): an ended session — revoked, past its
 * absolute expiry or idle past its idle timeout — is deleted once its last
 * use (`last_seen_at`, or its revocation if later) is older than the
 * tenant's period, with its refresh tokens (they cascade). A live session
 * is never deleted here: it ends under the tenant's session policy first.
 * A tenant that disabled the rule keeps its ended sessions; one with a
 * legal hold on `sessions` in force keeps them until the hold ends.
 * Bounded batches, `skip locked`, and a predicate that only ever gets truer,
 * so a repeated or taken-over run deletes nothing twice and never too early.
 */
export async function purgeRetainedSessions(db: Database, now: Date, signal: AbortSignal): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < maxBatchesPerTable && !signal.aborted; i++) {
    const rows = await db.transaction((em) =>
      em.execute<unknown[]>(
        `with doomed as (
           select s.id from sessions s left join retention_rules r on r.tenant_id = s.tenant_id and r.category = 'sessions'
           where coalesce(r.enabled, true)
             and greatest(s.last_seen_at, coalesce(s.revoked_at, s.last_seen_at)) < ?::timestamptz - make_interval(secs => coalesce(r.period_s, ?))
             and (s.revoked_at is not null or s.expires_at < ? or s.last_seen_at + make_interval(secs => s.idle_timeout_s) < ?)
             and not exists (select 1 from legal_holds h where h.tenant_id = s.tenant_id and h.category = 'sessions' and h.until_at > ?)
           limit ? for update of s skip locked)
         delete from sessions where id in (select id from doomed) returning 1`,
        [now, defaultSessionRetentionS, now, now, now, housekeepingBatch],
      ),
    );
    deleted += rows.length;
    if (rows.length < housekeepingBatch) break;
  }
  return deleted;
}

/** One housekeeping run: stale sign-in counters, then each table of `housekeepingTargets`, then the sessions rule; returns the counts per table. */
export async function runHousekeeping(db: Database, ctx: Pick<JobContext, "signal"> & { now?: () => Date }): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const throttle = new SignInThrottle(db);
  let counters = 0;
  for (let i = 0; i < maxBatchesPerTable && !ctx.signal.aborted; i++) {
    const n = await throttle.prune(housekeepingBatch);
    counters += n;
    if (n < housekeepingBatch) break;
  }
  counts["sign_in_throttles"] = counters;
  for (const target of housekeepingTargets) {
    if (ctx.signal.aborted) break;
    counts[target.table] = await purge(db, target, ctx.signal);
  }
  if (!ctx.signal.aborted) counts["sessions"] = await purgeRetainedSessions(db, ctx.now?.() ?? new Date(), ctx.signal);
  return counts;
}

/** The name of identity's housekeeping job in `scheduled_runs` and in metrics. */
export const housekeepingJob = "housekeeping";

/**
 * Identity's periodic housekeeping on the shared scheduler: every 15
 * minutes, on one replica, across every tenant (platform scope).
 */
export function housekeepingJobs(db: Database): JobSpec[] {
  return [
    {
      name: housekeepingJob,
      everyMs: 15 * 60_000,
      timeoutMs: 5 * 60_000,
      runAsPlatform: "identity housekeeping deletes expired tokens, challenges and sessions of every tenant, and ended sessions past each tenant's sessions retention rule",
      run: (ctx) => runHousekeeping(db, ctx),
    },
  ];
}
