import { Code, ConnectError } from "@connectrpc/connect";
import { runAsPlatform } from "@bulwark/core";
import type { Database } from "@bulwark/db";

/** When a key locks and for how long. */
export interface ThrottleRule {
  /** The failure that first locks (and every one after it). */
  readonly threshold: number;
  /** The longest lock, in seconds. */
  readonly maxLockS: number;
  /** Failures older than this are forgotten. */
  readonly windowS: number;
}

/** Per account: after 5 failures, 1 s, then 2 s, 4 s, … up to 15 minutes. */
export const accountRule: ThrottleRule = { threshold: 5, maxLockS: 900, windowS: 3_600 };
/** Per client address: looser, since many users can share one (NAT, offices). */
export const addressRule: ThrottleRule = { threshold: 100, maxLockS: 900, windowS: 3_600 };

/** The counter key of an account (by tenant slug, so unknown tenants and users count alike). */
export function accountKey(tenantSlug: string, email: string): string {
  return `acct:${tenantSlug}:${email}`;
}

/** The counter key of a client address. */
export function addressKey(ip: string): string {
  return `ip:${ip === "" ? "unknown" : ip}`;
}

/** A counter housekeeping may forget: untouched for a day and not locked (checked again on the row deleted, as a concurrent attempt may touch it). */
const stale = "updated_at < now() - interval '1 day' and (locked_until is null or locked_until < now())";

/** What counting one attempt found. */
export interface AttemptOutcome {
  /** Failures counted on the account key, this attempt included. */
  readonly failures: number;
  /** True when this attempt's failure, if it fails, locks the account. */
  readonly locksOnFailure: boolean;
}

interface CountRow {
  failures: number;
  locked_until: Date | string | null;
  counted: boolean;
}

/**
 * Brute-force protection with counters in Postgres (platform table
 * `sign_in_throttles`), so every replica and every concurrent attempt sees
 * the same count. Each attempt is counted before the password is checked,
 * with one atomic `insert … on conflict do update … returning`: an attempt
 * that finds its key locked is refused without touching the password (and
 * without extending the lock), so of N concurrent guesses at most
 * `threshold` are ever checked. Success clears the account's counter and
 * gives the address its attempt back.
 */
export class SignInThrottle {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Counts an attempt on both keys; RESOURCE_EXHAUSTED naming the retry time
   * if either is locked.
   */
  async attempt(account: string, address: string): Promise<AttemptOutcome> {
    return runAsPlatform("count a sign-in attempt", () =>
      this.#db.transaction(async (em) => {
        const acct = await count(em, account, accountRule);
        const ip = await count(em, address, addressRule);
        const refusedUntil = [acct, ip].filter((r) => !r.counted).map((r) => new Date(r.locked_until ?? Date.now()).getTime());
        if (refusedUntil.length > 0) throw lockedOut(new Date(Math.max(...refusedUntil)));
        return { failures: acct.failures, locksOnFailure: acct.failures >= accountRule.threshold };
      }),
    );
  }

  /** After a successful sign-in: the account starts afresh; the address gets its attempt back. */
  async succeeded(account: string, address: string): Promise<void> {
    await runAsPlatform("reset sign-in counters after success", () =>
      this.#db.transaction(async (em) => {
        await em.execute("delete from sign_in_throttles where key = ?", [account]);
        await em.execute("update sign_in_throttles set failures = greatest(failures - 1, 0) where key = ? and (locked_until is null or locked_until <= now())", [address]);
      }),
    );
  }

  /** Deletes up to `limit` counters untouched for a day and not locked (housekeeping; returns how many). */
  async prune(limit = 1_000): Promise<number> {
    return runAsPlatform("prune stale sign-in counters", () =>
      this.#db.transaction(async (em) => {
        const rows = await em.execute<{ key: string }[]>(
          `delete from sign_in_throttles where key in (select key from sign_in_throttles where ${stale} limit ?) and ${stale} returning key`,
          [limit],
        );
        return rows.length;
      }),
    );
  }
}

async function count(em: Parameters<Parameters<Database["transaction"]>[0]>[0], key: string, rule: ThrottleRule): Promise<CountRow> {
  const next = `(case when t.updated_at < now() - make_interval(secs => ?) then 1 else t.failures + 1 end)`;
  const rows = await em.execute<CountRow[]>(
    `insert into sign_in_throttles as t (key, tenant_id, failures, locked_until, updated_at)
       values (?, null, 1, case when 1 >= ? then now() + make_interval(secs => 1) else null end, now())
     on conflict (key) do update set
       failures = case when t.locked_until > now() then t.failures else ${next} end,
       locked_until = case
         when t.locked_until > now() then t.locked_until
         when ${next} >= ? then now() + make_interval(secs => least(power(2, ${next} - ?), ?))
         else null end,
       updated_at = case when t.locked_until > now() then t.updated_at else now() end
     returning failures, locked_until, (updated_at = now()) as counted`,
    [key, rule.threshold, rule.windowS, rule.windowS, rule.threshold, rule.windowS, rule.threshold, rule.maxLockS],
  );
  const row = rows[0];
  if (row === undefined) throw new Error("sign-in counter upsert returned nothing");
  return row;
}

function lockedOut(until: Date): ConnectError {
  const seconds = Math.max(1, Math.ceil((until.getTime() - Date.now()) / 1000));
  return new ConnectError(`too many failed sign-in attempts; retry after ${until.toISOString()} (in ${seconds} s)`, Code.ResourceExhausted);
}
