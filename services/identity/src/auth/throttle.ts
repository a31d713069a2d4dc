import { Code, ConnectError } from "@connectrpc/connect";
import { runAsPlatform } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";

/**
 * When a key locks and for how long. A failure rule (the default) counts
 * failed checks, forgets them after `windowS` without one, and locks for
 * `baseLockS`, doubling with each further failure up to `maxLockS`. A rate
 * rule (`rate: true`) counts every request in fixed windows of `windowS`
 * and refuses the rest of a window once `threshold` were counted in it.
 */
export interface ThrottleRule {
  /** The failure that first locks (and every one after it); for a rate, the requests a window allows. */
  readonly threshold: number;
  /** The longest lock, in seconds. */
  readonly maxLockS: number;
  /** Failures older than this are forgotten. */
  readonly windowS: number;
  /** The first lock, in seconds; each further failure doubles it, up to `maxLockS`. */
  readonly baseLockS?: number;
  /** What a refusal says (before "; retry after …"); by default, too many failed sign-in attempts. */
  readonly refusal?: string;
  /** A fixed-window rate rather than a failure count. */
  readonly rate?: boolean;
  /**
   * Checks admitted first on this counter take turns within a process (an
   * account's, a user's codes), so concurrent ones wait for each other's
   * verdict instead of polling. Not for addresses, which many users share.
   */
  readonly serial?: boolean;
}

/** Per account: after 5 failures, 1 s, then 2 s, 4 s, … up to 15 minutes. */
export const accountRule: ThrottleRule = { threshold: 5, maxLockS: 900, windowS: 3_600, serial: true };
/** Per client address: looser, since many users can share one (NAT, offices). */
export const addressRule: ThrottleRule = { threshold: 100, maxLockS: 900, windowS: 3_600 };
/**
 * Per user's second factor, across every challenge and every check of a
 * code: after 5 wrong codes a minute, then 2, 4, … up to an hour, and
 * remembered for a day. With ±1 time step accepted, that leaves a guesser
 * a few dozen of the million codes per day, and the user is told.
 */
export const secondFactorRule: ThrottleRule = { threshold: 5, baseLockS: 60, maxLockS: 3_600, windowS: 86_400, refusal: "too many wrong codes", serial: true };

/** One counter and the rule it follows. */
export interface Counter {
  readonly key: string;
  readonly rule: ThrottleRule;
}

/** The counter key of an account (by tenant slug, so unknown tenants and users count alike). */
export function accountKey(tenantSlug: string, email: string): string {
  return `acct:${tenantSlug}:${email}`;
}

/** The counter key of a client address. */
export function addressKey(ip: string): string {
  return `ip:${ip === "" ? "unknown" : ip}`;
}

/** The password counter of an account. */
export function accountCounter(tenantSlug: string, email: string): Counter {
  return { key: accountKey(tenantSlug, email), rule: accountRule };
}

/** The sign-in counter of a client address (passwords, codes and passkeys alike). */
export function addressCounter(ip: string): Counter {
  return { key: addressKey(ip), rule: addressRule };
}

/** Password reset mails per account (by slug and email, known or not): three an hour. */
export const resetMailRule: ThrottleRule = { threshold: 3, windowS: 3_600, maxLockS: 3_600, rate: true };
/** Password reset requests per client address: twenty an hour. */
export const resetAddressRule: ThrottleRule = { threshold: 20, windowS: 3_600, maxLockS: 3_600, rate: true };
/**
 * Passkey sign-in ceremonies begun per client address: sixty in five
 * minutes, about the lifetime of the challenge each one stores.
 */
export const passkeyBeginRule: ThrottleRule = { threshold: 60, windowS: 300, maxLockS: 300, rate: true, refusal: "too many passkey sign-ins begun" };
/**
 * Passkey sign-in ceremonies begun per tenant in five minutes: bounds the
 * challenges a tenant can have stored at once, whoever asks.
 */
export const passkeyTenantRule: ThrottleRule = { threshold: 20_000, windowS: 300, maxLockS: 300, rate: true, refusal: "too many passkey sign-ins begun" };

/** The counter of a user's second factor: wrong TOTP and recovery codes, wherever they are checked. */
export function secondFactorCounter(userId: string): Counter {
  return { key: `mfa:${userId}`, rule: secondFactorRule };
}

/** What counting one attempt found. */
export interface AttemptOutcome {
  /** Failures counted on the account key, this attempt included. */
  readonly failures: number;
  /** True when this attempt's failure, if it fails, locks the account. */
  readonly locksOnFailure: boolean;
}

/**
 * How a check ended, for each of its counters: `failed` counts a failure
 * (and may lock), `passed` clears the counter, `neutral` leaves it as it
 * was (a right password that still needs its second factor; the address of
 * a success, which must not let one good account wash out guesses at
 * others).
 */
export type Verdict = "failed" | "passed" | "neutral";

/** A check admitted on its counters; settle it exactly once. */
export interface Admission {
  readonly counters: readonly Counter[];
  /** Failures already counted on the first counter when the check was admitted. */
  readonly failures: number;
  /** Frees this process's turn on the first counter (if its rule is serial). */
  readonly release: () => void;
}

/** A counter after settling. */
export interface SettledCounter {
  readonly key: string;
  readonly failures: number;
  /** True when this settlement's failure put (or kept) the counter locked. */
  readonly locked: boolean;
  readonly lockedUntil: Date | undefined;
}

interface ClaimRow {
  throttle_key: string;
  throttle_failures: number;
  throttle_locked_until: Date | string | null;
  throttle_admitted: boolean;
}

/** How long a check may hold its slot before the slot is presumed abandoned (a crashed replica). */
const pendingSlotS = 30;
/** How long an attempt waits for other replicas' checks to settle before it is refused. */
const busyWaitMs = 10_000;

/**
 * Brute-force protection with counters in Postgres (platform table
 * `sign_in_throttles`), so every replica and every concurrent attempt sees
 * the same count.
 *
 * A check is admitted before the secret is looked at and settled after.
 * Admission takes a slot on every counter in one atomic upsert; a counter
 * admits only while its failures plus the checks in flight stay under its
 * threshold (after a lock, one check at a time), and a locked counter
 * refuses with RESOURCE_EXHAUSTED without touching the secret. So of N
 * concurrent guesses at most `threshold` are ever checked, while correct
 * attempts, which settle without a failure, are never refused for being
 * concurrent: an attempt that finds the slots full waits for them to settle
 * instead. Within one process the checks of one account (or one user's
 * codes) also take turns, so that waiting costs no polling; across
 * replicas it polls briefly.
 */
export class SignInThrottle {
  readonly #db: Database;
  readonly #turns = new Map<string, Promise<void>>();

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Admits one check on every counter (in one statement), or throws
   * RESOURCE_EXHAUSTED naming the retry time if any is locked. If the first
   * counter's rule is serial, its checks take turns in this process.
   */
  async admit(counters: readonly Counter[]): Promise<Admission> {
    return (await this.admitWith(counters)).admission;
  }

  /**
   * `admit`, with `read` run in the same statement and transaction (under
   * the caller's tenant scope): a sign-in counts its attempt and finds its
   * user in one round trip. `read` is a SELECT (`?` placeholders); its rows
   * come back whether or not the check is admitted, but only an admitted
   * check returns them.
   */
  async admitWith<R extends object>(counters: readonly Counter[], read?: { readonly text: string; readonly params: readonly unknown[] }): Promise<{ admission: Admission; found: R[] }> {
    const first = counters[0];
    if (first === undefined) throw new Error("admit needs a counter");
    const release = first.rule.serial === true ? await this.#turn(first.key) : () => undefined;
    try {
      const deadline = Date.now() + busyWaitMs;
      for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
        const claimed = await this.#claim<R>(counters, read);
        if (claimed.admitted) return { admission: { counters, failures: claimed.failures, release }, found: claimed.found };
        const refusal = counters.find((c) => c.key === claimed.key)?.rule.refusal;
        if (claimed.lockedUntil !== undefined) throw lockedOut(claimed.lockedUntil, refusal);
        if (Date.now() > deadline) throw lockedOut(new Date(Date.now() + 1000), refusal);
        await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      }
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Settles an admitted check: one verdict per counter, in the order they
   * were admitted; `clear` names further counters to clear (an account's
   * password counter once its second factor passed). Frees the turn even if
   * the statement fails.
   */
  async settle(admission: Admission, verdicts: readonly Verdict[], clear: readonly string[] = []): Promise<SettledCounter[]> {
    try {
      const statement = this.settlement(admission, verdicts, clear);
      return await this.#db.sql(async (sql) => settledRows(await sql.execute<SettleRow[]>(statement.text, statement.params)), { settings: countersSettings, durable: false });
    } finally {
      admission.release();
    }
  }

  /**
   * The settling UPDATE of `settle` (ending in `returning …`), for a caller
   * that runs it as a CTE of its own statement — the session a successful
   * sign-in writes — inside `sql(…, { settings: countersSettings })`. The
   * caller then calls `admission.release()`, and on failure `settle` with
   * neutral verdicts.
   */
  settlement(admission: Admission, verdicts: readonly Verdict[], clear: readonly string[] = []): { text: string; params: unknown[] } {
    const rows = [...admission.counters.map((c, i) => ({ key: c.key, verdict: verdicts[i] ?? "neutral", admitted: true })), ...clear.filter((k) => k !== "").map((key) => ({ key, verdict: "passed" as const, admitted: false }))];
    return {
      text: `update sign_in_throttles t set
               pending = case when v.admitted then greatest(t.pending - 1, 0) else t.pending end,
               pending_until = case when v.admitted and t.pending <= 1 then null else t.pending_until end,
               failures = case v.verdict when 'failed' then t.failures + 1 when 'passed' then 0 else t.failures end,
               locked_until = case v.verdict
                 when 'failed' then case when t.failures + 1 < t.threshold then t.locked_until
                   when t.fixed_window then t.updated_at + make_interval(secs => t.window_s)
                   else now() + make_interval(secs => least(t.base_lock_s * power(2, t.failures + 1 - t.threshold), t.max_lock_s)) end
                 when 'passed' then null
                 else t.locked_until end,
               updated_at = case when t.fixed_window then t.updated_at else now() end
             from (values ${rows.map(() => "(?, ?, ?::boolean)").join(", ")}) as v(key, verdict, admitted)
             where t.key = v.key
             returning t.key, t.failures, t.locked_until, (v.verdict = 'failed' and t.failures >= t.threshold) as locked`,
      params: rows.flatMap((r) => [r.key, r.verdict, r.admitted]),
    };
  }

  /**
   * Counts one request on every counter (rate rules), or throws
   * RESOURCE_EXHAUSTED if one of them has no room left in its window.
   */
  async spend(counters: readonly Counter[]): Promise<void> {
    const admission = await this.admit(counters);
    await this.settle(
      admission,
      counters.map(() => "failed"),
    );
  }

  /**
   * The older form, counting the attempt as a failure before the check and
   * refunding it on success (`succeeded`). It refuses concurrent correct
   * attempts once they reach the threshold; operator sign-in still uses it.
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

  /** After a successful `attempt`: the account starts afresh; the address gets its attempt back. */
  async succeeded(account: string, address: string): Promise<void> {
    await runAsPlatform("reset sign-in counters after success", () =>
      this.#db.transaction(async (em) => {
        await em.execute("delete from sign_in_throttles where key = ?", [account]);
        await em.execute("update sign_in_throttles set failures = greatest(failures - 1, 0) where key = ? and (locked_until is null or locked_until <= now())", [address]);
      }),
    );
  }

  /** Deletes up to `limit` stale counters (see `pruneCounters`) in a transaction of its own; returns how many. */
  async prune(limit = 1_000): Promise<number> {
    return runAsPlatform("prune stale sign-in counters", () => this.#db.transaction((em) => pruneCounters(em, limit)));
  }

  /** One atomic upsert over every counter (and `read`); all are admitted together or the transaction rolls back. */
  async #claim<R extends object>(
    counters: readonly Counter[],
    read: { readonly text: string; readonly params: readonly unknown[] } | undefined,
  ): Promise<{ admitted: true; failures: number; found: R[] } | { admitted: false; key: string; lockedUntil: Date | undefined }> {
    const upsert = `insert into sign_in_throttles as t (key, tenant_id, failures, pending, pending_until, locked_until, updated_at, threshold, window_s, base_lock_s, max_lock_s, fixed_window)
               select v.key, null, 0, 1, now() + make_interval(secs => ${pendingSlotS}), null, now(), v.threshold, v.window_s, v.base_lock_s, v.max_lock_s, v.fixed_window
               from (values ${counters.map(() => "(?, ?::int, ?::int, ?::int, ?::int, ?::boolean)").join(", ")}) as v(key, threshold, window_s, base_lock_s, max_lock_s, fixed_window)
             on conflict (key) do update set (failures, pending, pending_until, updated_at, threshold, window_s, base_lock_s, max_lock_s, fixed_window) = (
               select case when a.admit then a.f else t.failures end,
                      case when a.admit then a.p + 1 else t.pending end,
                      case when a.admit then now() + make_interval(secs => ${pendingSlotS}) else t.pending_until end,
                      -- A failure count restarts its window at every check; a rate only when a window ends.
                      case when a.admit and (not excluded.fixed_window or a.expired) then now() else t.updated_at end,
                      excluded.threshold, excluded.window_s, excluded.base_lock_s, excluded.max_lock_s, excluded.fixed_window
               from (select s.f, s.p, s.expired, not s.locked and (s.f + s.p < excluded.threshold or (s.f >= excluded.threshold and s.p = 0)) as admit
                     from (select coalesce(t.locked_until > now(), false) as locked,
                                  t.updated_at < now() - make_interval(secs => excluded.window_s) and coalesce(t.locked_until <= now(), true) as expired,
                                  case when t.updated_at < now() - make_interval(secs => excluded.window_s) and coalesce(t.locked_until <= now(), true) then 0 else t.failures end as f,
                                  case when t.pending_until > now() then t.pending else 0 end as p) s) a)
             returning key as throttle_key, failures as throttle_failures, locked_until as throttle_locked_until, (pending_until = now() + make_interval(secs => ${pendingSlotS})) as throttle_admitted`;
    const params = counters.flatMap((c) => [c.key, c.rule.threshold, c.rule.windowS, c.rule.baseLockS ?? 1, c.rule.maxLockS, c.rule.rate === true]);
    try {
      return await this.#db.sql(
        async (sql) => {
          const rows =
            read === undefined
              ? await sql.execute<(ClaimRow & R)[]>(upsert, params)
              : await sql.execute<(ClaimRow & R)[]>(`with claim as (${upsert}), found as (${read.text}) select claim.*, found.* from claim left join found on true`, [...params, ...read.params]);
          const claims = new Map(rows.map((r) => [r.throttle_key, r]));
          const refused = [...claims.values()].filter((r) => !r.throttle_admitted).map((r) => ({ key: r.throttle_key, until: r.throttle_locked_until === null ? 0 : new Date(r.throttle_locked_until).getTime() }));
          if (refused.length > 0) {
            // The latest lock is the one to wait for; with none, the slots are only full.
            const latest = refused.reduce((a, b) => (b.until > a.until ? b : a));
            throw new Refused(latest.key, latest.until > Date.now() ? new Date(latest.until) : undefined);
          }
          const found = read === undefined ? [] : rows.filter((r) => r.throttle_key === counters[0]!.key && Object.keys(r).some((k) => !k.startsWith("throttle_") && (r as Record<string, unknown>)[k] !== null));
          return { admitted: true as const, failures: claims.get(counters[0]!.key)?.throttle_failures ?? 0, found: found as R[] };
        },
        // A counter lost with the last instant before a Postgres crash is harmless; waiting for its flush on every attempt is not.
        { settings: countersSettings, durable: false },
      );
    } catch (err) {
      // Thrown inside the transaction so that the slots taken on other counters roll back.
      if (err instanceof Refused) return { admitted: false, key: err.key, lockedUntil: err.until };
      throw err;
    }
  }

  /** Waits for this process's earlier checks on `key`; resolves with the function that lets the next one go. */
  async #turn(key: string): Promise<() => void> {
    const previous = this.#turns.get(key) ?? Promise.resolve();
    let free!: () => void;
    const mine = new Promise<void>((resolve) => (free = resolve));
    const tail = previous.then(() => mine);
    this.#turns.set(key, tail);
    await previous;
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      free();
      if (this.#turns.get(key) === tail) this.#turns.delete(key);
    };
  }
}

/** The transaction setting that opens the counters table (its `sign_in_counters` policy) to a transaction of any scope. */
export const countersSettings: Readonly<Record<string, string>> = { "app.counters": "on" };

interface SettleRow {
  key: string;
  failures: number;
  locked_until: Date | string | null;
  locked: boolean;
}

/** The rows of a settling statement, as `settle` returns them. */
export function settledRows(rows: readonly SettleRow[]): SettledCounter[] {
  return rows.map((r) => ({ key: r.key, failures: r.failures, locked: r.locked, lockedUntil: r.locked_until === null ? undefined : new Date(r.locked_until) }));
}

/**
 * Deletes counters untouched for a day (or their window, if longer),
 * unlocked and with no check in flight, inside the caller's platform
 * transaction (housekeeping); returns how many.
 */
export async function pruneCounters(em: EntityManager, limit = 1_000): Promise<number> {
  // Checked again on every row deleted: a concurrent attempt may touch it.
  const stale = `updated_at < now() - greatest(interval '1 day', make_interval(secs => window_s))
         and (locked_until is null or locked_until < now())
         and (pending = 0 or pending_until is null or pending_until < now())`;
  const rows = await em.execute<{ n: number }[]>(
    `with gone as (
       delete from sign_in_throttles
       where key in (select key from sign_in_throttles where ${stale} limit ?) and ${stale}
       returning 1)
     select count(*)::int as n from gone`,
    [limit],
  );
  return rows[0]?.n ?? 0;
}

/** A refusal inside the claim transaction (rolls it back). */
class Refused extends Error {
  override name = "Refused";
  constructor(
    readonly key: string,
    readonly until: Date | undefined,
  ) {
    super("refused");
  }
}

interface CountRow {
  failures: number;
  locked_until: Date | string | null;
  counted: boolean;
}

async function count(em: EntityManager, key: string, rule: ThrottleRule): Promise<CountRow> {
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

function lockedOut(until: Date, refusal = "too many failed sign-in attempts"): ConnectError {
  const seconds = Math.max(1, Math.ceil((until.getTime() - Date.now()) / 1000));
  return new ConnectError(`${refusal}; retry after ${until.toISOString()} (in ${seconds} s)`, Code.ResourceExhausted);
}
