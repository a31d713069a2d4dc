import { timingSafeEqual } from "node:crypto";
import { authenticator } from "otplib";

/** RFC 6238 parameters: SHA-1, 6 digits, 30-second steps (what every authenticator app does). */
export const totpStepS = 30;
/** Codes of one step either side of now are accepted (clock drift, typing time). */
export const totpWindow = 1;
/** The issuer shown by authenticator apps. */
export const totpIssuer = "Bulwark";

/** A new shared secret: 20 random bytes (160 bits, RFC 4226's recommendation), base32. */
export function newTotpSecret(): string {
  return authenticator.generateSecret(20);
}

/** The otpauth:// URI for a QR code; the label is the user's email. */
export function otpauthUri(email: string, secret: string): string {
  return authenticator.keyuri(email, totpIssuer, secret);
}

/** The time step of an instant. */
export function stepAt(nowMs: number): number {
  return Math.floor(nowMs / 1000 / totpStepS);
}

/** The code of one time step. */
export function codeAt(secret: string, step: number): string {
  return authenticator.clone({ epoch: step * totpStepS * 1000, step: totpStepS, window: 0 }).generate(secret);
}

/**
 * The time step whose code `code` is, within ±1 step of `nowMs`, or
 * undefined. The caller stores the step so it is never accepted again.
 * Later steps are tried first so the highest matching step wins.
 */
export function matchingStep(secret: string, code: string, nowMs = Date.now()): number | undefined {
  const now = stepAt(nowMs);
  const given = Buffer.from(code, "utf8");
  for (let delta = totpWindow; delta >= -totpWindow; delta--) {
    const expected = Buffer.from(codeAt(secret, now + delta), "utf8");
    if (expected.length === given.length && timingSafeEqual(expected, given)) return now + delta;
  }
  return undefined;
}
