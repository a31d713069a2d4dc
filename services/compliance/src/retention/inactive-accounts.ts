import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { InactiveAccountChangedSchema, InactiveAccountSchema, InactiveAccountState, type InactiveAccount, type User } from "@bulwark/contracts";
import { describeError, type Logger } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { ComplianceContext } from "../context.js";
import { asCompliance } from "../posture/mesh.js";
import { inactiveGraceS } from "./rules.js";

/** An inactive_accounts row. */
export interface InactiveRow {
  tenant_id: string;
  user_id: string;
  state: "warned" | "kept" | "deleted";
  warned_at: Date;
  delete_at: Date;
  /** The user's last activity (sign-in, refresh or creation) when warned: any later activity keeps the account. */
  last_sign_in_at: Date | null;
  settled_at: Date | null;
}

const stateOf = { warned: InactiveAccountState.WARNED, kept: InactiveAccountState.KEPT, deleted: InactiveAccountState.DELETED } as const;

/** The wire form of a row. */
export function inactiveToProto(r: InactiveRow): InactiveAccount {
  return create(InactiveAccountSchema, {
    userId: r.user_id,
    state: stateOf[r.state],
    warnTime: timestampFromDate(new Date(r.warned_at)),
    deleteTime: timestampFromDate(new Date(r.delete_at)),
    ...(r.last_sign_in_at !== null ? { lastSignInTime: timestampFromDate(new Date(r.last_sign_in_at)) } : {}),
  });
}

/** The user's last sign-in, refresh or creation, whichever is latest. */
export function lastSeenOf(u: User): Date {
  const times = [u.createTime, u.lastSignInTime, u.lastActivityTime].filter((t) => t !== undefined).map((t) => timestampDate(t).getTime());
  return new Date(Math.max(0, ...times));
}

/** What deleting an account removes in identity (its erasure categories): a legal hold on any of them keeps inactive accounts. */
const accountCategories = ["profile", "sessions", "passkeys", "factors", "role_grants"];

/** What one run of the rule did in one tenant. */
export interface InactiveRunCounts {
  warned: number;
  kept: number;
  deleted: number;
}

/**
 * The inactive-account rule for one tenant at `now`, idempotent: accounts
 * idle for the rule's period minus 30 days are warned once (identity mails
 * the user; the row in inactive_accounts is the once), warned accounts whose
 * user was active since are kept, and those whose grace ended are deleted
 * through identity. Every change is an event on
 * bulwark.compliance.inactive_account.<warned|kept|deleted>. Run in the
 * tenant as compliance (`asCompliance`).
 */
export async function runInactiveAccountRule(ctx: ComplianceContext, tenantId: string, periodS: number, now: Date, logger: Logger): Promise<InactiveRunCounts> {
  return asCompliance(tenantId, async () => {
    const counts: InactiveRunCounts = { warned: 0, kept: 0, deleted: 0 };
    const warnAfterMs = (periodS - inactiveGraceS) * 1000;
    const cutoff = new Date(now.getTime() - warnAfterMs);
    // 1. Settle what was warned before: kept (active since), or deleted once due.
    const warned = await ctx.deps.db.transaction((em) => em.execute<InactiveRow[]>("select * from inactive_accounts where state = 'warned' order by delete_at"));
    const settledNow = new Set<string>();
    // A legal hold in force on what deleting an account removes keeps every warned account (retried once it is lifted).
    const [hold] = await ctx.deps.db.transaction((em) =>
      em.execute<{ category: string }[]>(`select category from legal_holds where tenant_id = ? and category in (${accountCategories.map(() => "?").join(", ")}) and until_at > ? limit 1`, [tenantId, ...accountCategories, now]),
    );
    for (const row of warned) {
      let user: User | undefined;
      try {
        user = (await ctx.identity.users.getUser({ userId: row.user_id })).user;
      } catch (err) {
        if (ConnectError.from(err).code !== Code.NotFound) throw err;
      }
      if (user === undefined) {
        await settle(ctx, row, "deleted", now);
        settledNow.add(row.user_id);
        continue;
      }
      const seen = lastSeenOf(user);
      if (row.last_sign_in_at !== null && seen.getTime() > new Date(row.last_sign_in_at).getTime()) {
        await settle(ctx, row, "kept", now);
        settledNow.add(row.user_id);
        counts.kept++;
        continue;
      }
      if (now.getTime() < new Date(row.delete_at).getTime()) continue;
      if (hold !== undefined) {
        logger.info({ tenantId, userId: row.user_id, category: hold.category }, "an inactive account is kept: a legal hold is in force");
        continue;
      }
      try {
        await ctx.identity.users.deleteUser({ userId: row.user_id });
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (code !== Code.NotFound) {
          // The tenant's last owner, or a refusal: left warned, tried again next run.
          if (code === Code.FailedPrecondition || code === Code.PermissionDenied) {
            logger.warn({ tenantId, userId: row.user_id, err: describeError(err) }, "identity refused to delete an inactive account; it stays warned");
            continue;
          }
          throw err;
        }
      }
      await settle(ctx, row, "deleted", now);
      settledNow.add(row.user_id);
      counts.deleted++;
    }
    // 2. Warn the newly inactive (once: a warned row is not warned again).
    const pending = new Set(warned.filter((r) => !settledNow.has(r.user_id)).map((r) => r.user_id));
    let pageToken = "";
    do {
      const page = await ctx.identity.users.listUsers({ pageSize: 500, pageToken });
      for (const u of page.users) {
        if (pending.has(u.id)) continue;
        const seen = lastSeenOf(u);
        if (seen.getTime() >= cutoff.getTime()) continue;
        if (await warn(ctx, tenantId, u, seen, cutoff, now, periodS)) counts.warned++;
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    ctx.deps.relay.nudge();
    return counts;
  });
}

async function settle(ctx: ComplianceContext, row: InactiveRow, state: "kept" | "deleted", now: Date): Promise<void> {
  await ctx.deps.db.transaction(async (em) => {
    const updated = (await em.execute<InactiveRow[]>("update inactive_accounts set state = ?, settled_at = ? where user_id = ? and state = 'warned' returning *", [state, now, row.user_id]))[0];
    if (updated !== undefined) await publish(ctx, em, updated, state);
  });
}

/**
 * Records the warning and asks identity to mail it, in one transaction: the
 * row is written first (a replica racing us waits on it, then finds it
 * warned), and a refusal from identity (the user was active after all)
 * rolls it back.
 */
async function warn(ctx: ComplianceContext, tenantId: string, u: User, seen: Date, cutoff: Date, now: Date, periodS: number): Promise<boolean> {
  const deleteAt = new Date(Math.max(now.getTime() + inactiveGraceS * 1000, seen.getTime() + periodS * 1000));
  try {
    return await ctx.deps.db.transaction(async (em) => {
      const row = (
        await em.execute<InactiveRow[]>(
          `insert into inactive_accounts as a (tenant_id, user_id, state, warned_at, delete_at, last_sign_in_at, settled_at)
             values (?, ?, 'warned', ?, ?, ?, null)
           on conflict (tenant_id, user_id) do update set state = 'warned', warned_at = excluded.warned_at, delete_at = excluded.delete_at, last_sign_in_at = excluded.last_sign_in_at, settled_at = null
             where a.state <> 'warned' and a.last_sign_in_at is distinct from excluded.last_sign_in_at
           returning *`,
          [tenantId, u.id, now, deleteAt, seen],
        )
      )[0];
      if (row === undefined) return false;
      await ctx.identity.users.warnInactiveUser({ userId: u.id, deleteTime: timestampFromDate(deleteAt), lastActivityBefore: timestampFromDate(cutoff) });
      await publish(ctx, em, row, "warned");
      return true;
    });
  } catch (err) {
    const code = ConnectError.from(err).code;
    if (code === Code.FailedPrecondition || code === Code.NotFound) return false;
    throw err;
  }
}

async function publish(ctx: ComplianceContext, em: EntityManager, row: InactiveRow, verb: "warned" | "kept" | "deleted"): Promise<void> {
  await ctx.deps.events.publish(em, { aggregate: "inactive_account", verb, aggregateId: row.user_id, schema: InactiveAccountChangedSchema, payload: create(InactiveAccountChangedSchema, { account: inactiveToProto(row) }) });
}
