import { randomBytes } from "node:crypto";

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

/**
 * A new type-prefixed id (`ten_`, `usr_`, `evt_`, …): a millisecond time
 * component, so ids sort roughly by creation, and 80 random bits.
 */
export function newId(prefix: string): string {
  const time = Date.now().toString(36).padStart(9, "0");
  const bytes = randomBytes(16);
  let random = "";
  for (const b of bytes) random += alphabet[b % 36];
  return `${prefix}_${time}${random}`;
}
