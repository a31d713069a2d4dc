/**
 * RFC 6238 (SHA-1, 6 digits, 30 s) written out for the tests, so they check
 * identity's second factor against the standard rather than against the
 * library it uses.
 */
import { createHmac } from "node:crypto";

function base32Decode(s: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of s.replace(/=+$/, "")) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The code of one time step. */
export function totpAt(secret: string, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  return ((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).toString().padStart(6, "0");
}

/** The current time step. */
export const currentStep = (): number => Math.floor(Date.now() / 30_000);

/** The code of the current step plus `delta` (the service accepts -1, 0 and +1). */
export const totpCode = (secret: string, delta = 0): string => totpAt(secret, currentStep() + delta);

/** A code that is none of the three the service accepts now (and differs per `n`). */
export function wrongTotpCode(secret: string, n = 0): string {
  const valid = new Set([-1, 0, 1].map((d) => totpCode(secret, d)));
  for (let i = n; ; i++) {
    const c = String(i).padStart(6, "0");
    if (!valid.has(c)) return c;
  }
}

/** Waits until at least 5 s remain in the current time step, so a test's codes stay in one window. */
export async function roomInStep(): Promise<void> {
  const left = 30_000 - (Date.now() % 30_000);
  if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
}
