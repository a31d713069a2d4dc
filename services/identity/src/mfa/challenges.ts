import type { EntityManager } from "@bulwark/db";
import type { RefusedCheck } from "../auth/refusals.js";

/** Wrong codes a challenge survives; the fifth ends it. */
export const maxChallengeAttempts = 5;

/** An MFA challenge that may still be answered, with the sign-in it continues. */
export interface LiveMfaChallenge {
  user_id: string;
  device: string;
  user_agent: string;
  ip_address: string;
  /** The password counter of the sign-in that opened it, cleared when the second factor passes. */
  account_key: string;
}

/**
 * The MFA challenge with this token hash if it can still be answered —
 * unused, unexpired and not exhausted by wrong codes — inside the caller's
 * tenant transaction. Every factor (TOTP, recovery code, passkey) asks the
 * same question, so none of them finishes a challenge another has ended.
 */
export async function liveMfaChallenge(em: EntityManager, hash: string, opts: { lock?: boolean } = {}): Promise<LiveMfaChallenge | undefined> {
  const rows = await em.execute<LiveMfaChallenge[]>(
    `select user_id, device, user_agent, ip_address, account_key from mfa_challenges where hash = ? and used_at is null and expires_at > now() and failed_attempts < ?${opts.lock === true ? " for update" : ""}`,
    [hash, maxChallengeAttempts],
  );
  return rows[0];
}

/**
 * Why the challenge with this hash cannot be answered (for the debug log of
 * a refusal), in users' `mfa_challenges` or operators' table.
 */
export async function whyNotLive(em: EntityManager, hash: string, table: "mfa_challenges" | "operator_mfa_challenges" = "mfa_challenges"): Promise<RefusedCheck> {
  const rows = await em.execute<{ used: boolean; expired: boolean; exhausted: boolean }[]>(
    `select used_at is not null as used, expires_at <= now() as expired, failed_attempts >= ? as exhausted from ${table} where hash = ?`,
    [maxChallengeAttempts, hash],
  );
  const r = rows[0];
  if (r === undefined) return "challenge_unknown";
  return r.used ? "challenge_used" : r.exhausted ? "challenge_exhausted" : r.expired ? "challenge_expired" : "challenge_unknown";
}
