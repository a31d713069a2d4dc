import { createHash, randomBytes } from "node:crypto";

/** How long an invitation can be accepted. */
export const invitationLifetimeMs = 7 * 86_400_000;

/** A new invitation token: 32 random bytes, base64url (shown once, never stored). */
export function newInvitationToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * What is stored of a token: its SHA-256, hex. The token has 256 bits of
 * entropy, so a fast unsalted hash is enough and allows lookup by hash.
 */
export function hashInvitationToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}
