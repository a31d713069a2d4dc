import { createHash, randomInt } from "node:crypto";

/** Crockford's base32: no I, L, O or U, so codes read and type unambiguously. */
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** How many codes a user gets. */
export const recoveryCodeCount = 10;
/** Characters per code: 10 × 5 bits = 50 bits, far beyond online guessing. */
const codeLength = 10;

/** A fresh set of recovery codes, "XXXXX-XXXXX". */
export function newRecoveryCodes(count = recoveryCodeCount): string[] {
  const codes = new Set<string>();
  while (codes.size < count) {
    let raw = "";
    for (let i = 0; i < codeLength; i++) raw += alphabet[randomInt(alphabet.length)];
    codes.add(`${raw.slice(0, 5)}-${raw.slice(5)}`);
  }
  return [...codes];
}

/** A code as typed, in canonical form: upper case, no dashes or spaces, Crockford look-alikes mapped. */
export function normalizeRecoveryCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, "").replace(/[IL]/g, "1").replace(/O/g, "0");
}

/**
 * The stored form of a recovery code: SHA-256 of the user id and the
 * canonical code. The codes carry 50 random bits, so a fast hash suffices;
 * the user id keeps equal codes of two users apart.
 */
export function recoveryCodeHash(userId: string, code: string): string {
  return createHash("sha256").update(`${userId}\0${normalizeRecoveryCode(code)}`).digest("hex");
}
