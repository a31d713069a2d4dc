import { createHash, randomBytes } from "node:crypto";
import type { Database } from "@bulwark/db";

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

/** An invitation token on its way to the invitee. */
export interface InvitationDelivery {
  readonly tenantId: string;
  readonly userId: string;
  /** The invitee's address: the only one that receives the token. */
  readonly email: string;
  readonly displayName: string;
  /** The secret itself; never logged, never in an event. */
  readonly token: string;
  readonly expiresAt: Date;
}

/**
 * Where CreateUser hands the invitation token after commit (the same
 * pattern as password reset and email change tokens): the notifications
 * part's mailer, which sends the invitee a link to accept.
 */
export interface InvitationSink {
  deliver(invitation: InvitationDelivery): Promise<void>;
}

/** Drops every token: without a mailer an invitation is accepted only with a token the caller asked for. */
export const droppingInvitationSink: InvitationSink = { deliver: async () => undefined };

/** The sink of each started service, keyed by its database (as for email changes). */
const sinks = new WeakMap<Database, InvitationSink>();

/** Routes the invitation tokens of the service using `db` to a real delivery. */
export function deliverInvitationsTo(db: Database, sink: InvitationSink): void {
  sinks.set(db, sink);
}

/** The sink of the service using `db`; the dropping sink until one is set. */
export function invitationSinkOf(db: Database): InvitationSink {
  return sinks.get(db) ?? droppingInvitationSink;
}
