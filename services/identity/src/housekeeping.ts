import { describeError, runAsPlatform, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import { pruneCounters } from "./auth/throttle.js";

/** How many rows one run deleted, per kind. */
export interface HousekeepingCounts {
  readonly signInCounters: number;
  readonly refreshTokens: number;
  readonly mfaChallenges: number;
  readonly webauthnChallenges: number;
  readonly passwordResetTokens: number;
  readonly emailChangeTokens: number;
  readonly operatorSessions: number;
}

/** The tables whose expired rows a run deletes, by `expires_at`. */
const expiring: readonly [keyof HousekeepingCounts, string][] = [
  ["refreshTokens", "refresh_tokens"],
  ["mfaChallenges", "mfa_challenges"],
  ["webauthnChallenges", "webauthn_challenges"],
  ["passwordResetTokens", "password_reset_tokens"],
  ["emailChangeTokens", "email_change_tokens"],
  ["operatorSessions", "operator_sessions"],
];

/**
 * Identity's periodic clean-up, until the mesh's shared scheduler takes it
 * over: every few minutes it deletes what can no longer be used — sign-in
 * counters untouched for a day (SignInThrottle's rule), and expired refresh
 * tokens, MFA and WebAuthn challenges, password-reset and email-change
 * tokens and operator sessions — so tables that anonymous callers can make
 * grow stay bounded. Each run is one platform transaction that first takes
 * a transaction-scoped advisory lock (`pg_try_advisory_xact_lock`, keyed by
 * the schema): when another replica holds it, this one skips the run.
 */
export class Housekeeping {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(
    private readonly db: Database,
    private readonly logger?: Logger,
  ) {}

  /** One run; undefined when another replica was running one. */
  async runOnce(): Promise<HousekeepingCounts | undefined> {
    return runAsPlatform("identity housekeeping: delete expired rows", () =>
      this.db.transaction(async (em) => {
        const lock = await em.execute<{ locked: boolean }[]>("select pg_try_advisory_xact_lock(hashtext('bulwark.identity.housekeeping:' || current_schema())) as locked");
        if (lock[0]?.locked !== true) return undefined;
        const counts: Record<keyof HousekeepingCounts, number> = { signInCounters: await pruneCounters(em), refreshTokens: 0, mfaChallenges: 0, webauthnChallenges: 0, passwordResetTokens: 0, emailChangeTokens: 0, operatorSessions: 0 };
        for (const [kind, table] of expiring) counts[kind] = await deleteExpired(em, table);
        return counts;
      }),
    );
  }

  /** Runs every `intervalMs` (the first run after a random part of it, so replicas spread out). */
  start(intervalMs: number): void {
    if (intervalMs <= 0 || this.#timer !== undefined) return;
    const tick = (): void => {
      this.#running = this.runOnce().then(
        (counts) => {
          if (counts !== undefined && Object.values(counts).some((n) => n > 0)) this.logger?.info({ deleted: counts }, "housekeeping deleted expired rows");
        },
        (err: unknown) => this.logger?.warn({ err: describeError(err) }, "housekeeping run failed"),
      );
    };
    this.#timer = setTimeout(() => {
      tick();
      this.#timer = setInterval(tick, intervalMs);
      this.#timer.unref();
    }, Math.floor(Math.random() * intervalMs));
    this.#timer.unref();
  }

  /** Stops the timer and waits for a run in progress. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}

async function deleteExpired(em: EntityManager, table: string): Promise<number> {
  const rows = await em.execute<{ n: number }[]>(`with gone as (delete from ${table} where expires_at < now() returning 1) select count(*)::int as n from gone`);
  return rows[0]?.n ?? 0;
}
