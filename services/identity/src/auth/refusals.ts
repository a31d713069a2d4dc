import type { Logger } from "@bulwark/core";

/**
 * Which check refused a sign-in, a second factor or a WebAuthn ceremony.
 * Callers all get one answer ("invalid credentials"), so that an attacker
 * learns nothing; the operator of the service learns which check it was
 * from a debug line, which names the check and never the secret, the code,
 * the challenge or the response.
 */
export type RefusedCheck =
  // sign-in
  | "tenant"
  | "user"
  | "password"
  | "locked"
  | "ip_allowlist"
  // MFA challenges and codes
  | "challenge_unknown"
  | "challenge_used"
  | "challenge_expired"
  | "challenge_exhausted"
  | "challenge_other_user"
  | "wrong_code"
  | "replayed_code"
  | "factor_missing"
  // WebAuthn
  | "malformed"
  | "challenge"
  | "passkey_unknown"
  | "origin"
  | "rp_id"
  | "type"
  | "signature"
  | "counter"
  | "user_verification"
  | "user_presence"
  | "response";

/** Logs refusals at debug level; the no-op when no logger is wired (unit tests). */
export interface RefusalLog {
  /** `what` is the step refused ("sign-in", "mfa challenge", "passkey sign-in", "passkey registration", "operator sign-in"). */
  refused(what: string, check: RefusedCheck, ids?: { readonly userId?: string; readonly operatorId?: string; readonly passkeyId?: string }): void;
}

/** A RefusalLog writing to `logger` (at debug), or to nowhere. */
export function refusalLog(logger: Logger | undefined): RefusalLog {
  if (logger === undefined) return { refused: () => undefined };
  return {
    refused(what, check, ids = {}) {
      logger.debug({ refused: what, check, ...ids }, `${what} refused: ${check}`);
    },
  };
}

/**
 * Which WebAuthn check an error of @simplewebauthn/server's verify
 * functions reports. Its messages quote the values they compare (the
 * challenge among them), so only this classification is ever logged.
 */
export function webAuthnCheckOf(err: unknown): RefusedCheck {
  const message = err instanceof Error ? err.message : "";
  if (/origin/i.test(message)) return "origin";
  if (/challenge/i.test(message)) return "challenge";
  if (/rp ?id/i.test(message)) return "rp_id";
  if (/user verification|could not be verified/i.test(message)) return "user_verification";
  if (/not present/i.test(message)) return "user_presence";
  if (/counter/i.test(message)) return "counter";
  if (/response type|credential type/i.test(message)) return "type";
  if (/signature|not verified/i.test(message)) return "signature";
  return "response";
}
