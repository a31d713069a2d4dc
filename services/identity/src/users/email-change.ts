import { createHash, randomBytes } from "node:crypto";
import type { Database } from "@bulwark/db";

/** How long an email change can be confirmed. */
export const emailChangeLifetimeMs = 24 * 3_600_000;

/** A new confirmation token: 32 random bytes, base64url (mailed once, never stored). */
export function newEmailChangeToken(): string {
  return randomBytes(32).toString("base64url");
}

/** What is stored of a token: its SHA-256, hex (256 bits of entropy make a salt useless). */
export function hashEmailChangeToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A confirmation token on its way to the new address. */
export interface EmailChangeDelivery {
  readonly tenantId: string;
  readonly userId: string;
  /** The address asked for: the only one that receives the token. */
  readonly newEmail: string;
  readonly displayName: string;
  /** The secret itself; never logged, never in an event. */
  readonly token: string;
  readonly expiresAt: Date;
}

/**
 * Where RequestEmailChange hands the confirmation token after commit (the
 * same pattern as password reset tokens): the notifications part's mailer.
 */
export interface EmailChangeSink {
  deliver(change: EmailChangeDelivery): Promise<void>;
}

/** Drops every token: without a mailer a change can be requested but not confirmed. */
export const droppingEmailChangeSink: EmailChangeSink = { deliver: async () => undefined };

/**
 * The sink of each started service, keyed by its database (the one thing
 * UserService's deps and the notifications part both hold), so the users
 * part needs no wiring change to find the mailer.
 */
const sinks = new WeakMap<Database, EmailChangeSink>();

/** Routes the confirmation tokens of the service using `db` to a real delivery. */
export function deliverEmailChangeTokensTo(db: Database, sink: EmailChangeSink): void {
  sinks.set(db, sink);
}

/** The sink of the service using `db`; the dropping sink until one is set. */
export function emailChangeSinkOf(db: Database): EmailChangeSink {
  return sinks.get(db) ?? droppingEmailChangeSink;
}
