import { isMessage } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ApiKeyExpiringSchema, ApiKeyExposedSchema, PasswordChangedSchema, UserEmailChangedSchema, UserEmailChangeRequestedSchema, UserMfaCodesGuessedSchema, UserSignedInSchema, type Envelope } from "@bulwark/contracts";
import type { Logger } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { ConsumedEvent } from "@bulwark/events";
import type { ResetTokenSink } from "../auth/reset-token-sink.js";
import type { EmailChangeSink } from "../users/email-change.js";
import type { InvitationSink } from "../users/invitation-token.js";
import type { Mailer } from "./mailer.js";
import { composeMessage, type MessageFacts, type NotificationKind } from "./messages.js";

/** The verbs of `<prefix>.identity.user.<verb>` that mail the user, and the kind of mail. */
const kindOfVerb: Readonly<Record<string, NotificationKind>> = {
  password_changed: "password_changed",
  email_change_requested: "email_change_requested",
  email_changed: "email_changed",
  passkey_added: "passkey_added",
  mfa_disabled: "mfa_disabled",
  recovery_codes_viewed: "recovery_codes_viewed",
  recovery_code_used: "recovery_code_used",
  signed_in: "new_device_sign_in",
  mfa_codes_guessed: "mfa_codes_guessed",
};

/** The mail of one event: its kind, recipient and facts; undefined if it sends none. */
interface Planned {
  readonly kind: NotificationKind;
  readonly to: string;
  readonly facts: MessageFacts;
}

/**
 * Identity's security notifications: mails to a user when something
 * happened to their account (from events), and the one-time tokens the
 * RPCs hand over after commit (password reset, email confirmation,
 * invitation), which never travel in an event.
 */
export class Notifier {
  constructor(
    private readonly mailer: Mailer,
    private readonly logger: Logger,
  ) {}

  /**
   * Handles one user event inside the consumer's transaction (the tenant of
   * the event is in context, so `em` sees that tenant's users only). The
   * inbox row commits with it, so a redelivered event sends nothing; a mail
   * server that refuses makes the handler fail and the consumer retry.
   */
  /**
   * Whether an event can lead to a mail at all; the consumer acknowledges
   * the rest (most sign-ins: known devices) without touching the database.
   */
  concerns(event: ConsumedEvent): boolean {
    const kind = kindOfVerb[event.subject.slice(event.subject.lastIndexOf(".") + 1)];
    if (kind === undefined || event.envelope.tenantId === "" || event.envelope.aggregateId === "") return false;
    if (kind === "new_device_sign_in") return isMessage(event.payload, UserSignedInSchema) && event.payload.newDevice;
    return true;
  }

  async handle(event: ConsumedEvent, em: EntityManager): Promise<void> {
    const { envelope } = event;
    const kind = kindOfVerb[event.subject.slice(event.subject.lastIndexOf(".") + 1)];
    if (kind === undefined || envelope.tenantId === "" || envelope.aggregateId === "") return;
    const userId = envelope.aggregateId;
    const user = (await em.execute<{ email: string; display_name: string }[]>("select email, display_name from users where id = ?", [userId]))[0];
    if (user === undefined) return; // deleted since: nobody to tell
    const planned = await this.#plan(kind, envelope, userId, user.email, user.display_name, em);
    if (planned === undefined) return;
    await this.#send(planned, userId);
  }

  /** The sink auth hands password reset tokens to: mails the token to the user. */
  resetTokenSink(): ResetTokenSink {
    return {
      deliver: (r) => this.#deliver({ kind: "password_reset", to: r.email, facts: { displayName: r.displayName, token: r.token, expiresAt: r.expiresAt } }, r.userId),
    };
  }

  /** The sink RequestEmailChange hands confirmation tokens to: mails the token to the new address. */
  emailChangeSink(): EmailChangeSink {
    return {
      deliver: (c) => this.#deliver({ kind: "email_change_confirm", to: c.newEmail, facts: { displayName: c.displayName, token: c.token, expiresAt: c.expiresAt } }, c.userId),
    };
  }

  /**
   * The sink CreateUser hands invitation tokens to: mails the invitee a link
   * `<publicBaseUrl>/accept-invitation?token=…` (the inviter never needs to
   * see the token).
   */
  invitationSink(publicBaseUrl: string): InvitationSink {
    return {
      deliver: (i) => {
        const link = `${publicBaseUrl}/accept-invitation?token=${encodeURIComponent(i.token)}`;
        return this.#deliver({ kind: "invited", to: i.email, facts: { displayName: i.displayName, link, expiresAt: i.expiresAt } }, i.userId);
      },
    };
  }

  async #plan(kind: NotificationKind, envelope: Envelope, userId: string, email: string, displayName: string, em: EntityManager): Promise<Planned | undefined> {
    const time = envelope.occurTime !== undefined ? new Date(Number(envelope.occurTime.seconds) * 1000) : undefined;
    const facts: MessageFacts = { displayName, ...(time !== undefined ? { time } : {}) };
    const any = envelope.payload;
    switch (kind) {
      case "password_changed": {
        const p = any === undefined ? undefined : anyUnpack(any, PasswordChangedSchema);
        return { kind, to: email, facts: { ...facts, reset: p?.reset ?? false } };
      }
      case "email_change_requested": {
        // The notice goes to the address the user had when asking, even if
        // the change was confirmed before this event was handled.
        const p = any === undefined ? undefined : anyUnpack(any, UserEmailChangeRequestedSchema);
        return { kind, to: p?.currentEmail || email, facts: { ...facts, otherEmail: p?.newEmail ?? "" } };
      }
      case "email_changed": {
        const p = any === undefined ? undefined : anyUnpack(any, UserEmailChangedSchema);
        if (p === undefined || p.oldEmail === "") return undefined;
        return { kind, to: p.oldEmail, facts: { ...facts, otherEmail: p.newEmail } };
      }
      case "new_device_sign_in": {
        const p = any === undefined ? undefined : anyUnpack(any, UserSignedInSchema);
        if (p === undefined || !p.newDevice) return undefined;
        // A user's very first session is not news to them.
        const earlier = await em.execute<{ n: number }[]>("select count(*)::int as n from sessions where user_id = ? and id <> ?", [userId, p.sessionId]);
        if ((earlier[0]?.n ?? 0) === 0) return undefined;
        return { kind, to: email, facts: { ...facts, device: p.device, ipAddress: p.ipAddress } };
      }
      case "mfa_codes_guessed": {
        const p = any === undefined ? undefined : anyUnpack(any, UserMfaCodesGuessedSchema);
        return { kind, to: email, facts: { ...facts, ipAddress: p?.ipAddress ?? "", failures: p?.failures ?? 0, ...(p?.lockedUntil !== undefined ? { lockedUntil: timestampDate(p.lockedUntil) } : {}) } };
      }
      default:
        return { kind, to: email, facts };
    }
  }

  /**
   * Whether a keys event leads to a mail: an exposed key (revoked at once)
   * and a key expiring within seven days are told to their owner.
   */
  concernsKey(event: ConsumedEvent): boolean {
    if (event.envelope.tenantId === "") return false;
    return isMessage(event.payload, ApiKeyExposedSchema) || isMessage(event.payload, ApiKeyExpiringSchema);
  }

  /** Mails the owner of an exposed or expiring API key (in the event's tenant context). */
  async handleKey(event: ConsumedEvent, em: EntityManager): Promise<void> {
    const p = event.payload;
    const exposed = isMessage(p, ApiKeyExposedSchema) ? p : undefined;
    const expiring = isMessage(p, ApiKeyExpiringSchema) ? p : undefined;
    const ownerId = exposed?.ownerUserId ?? expiring?.ownerUserId ?? "";
    if (ownerId === "") return;
    const user = (await em.execute<{ email: string; display_name: string }[]>("select email, display_name from users where id = ?", [ownerId]))[0];
    if (user === undefined) return;
    const facts: MessageFacts = { displayName: user.display_name, keyName: exposed?.name ?? expiring?.name ?? "", keyId: exposed?.keyId ?? expiring?.keyId ?? "" };
    if (exposed !== undefined) await this.#send({ kind: "api_key_exposed", to: user.email, facts: { ...facts, foundAt: exposed.url, reporter: exposed.source } }, ownerId);
    else if (expiring !== undefined) await this.#send({ kind: "api_key_expiring", to: user.email, facts: { ...facts, ...(expiring.expireTime !== undefined ? { expiresAt: timestampDate(expiring.expireTime) } : {}) } }, ownerId);
  }

  async #send(p: Planned, userId: string): Promise<void> {
    const { subject, text } = composeMessage(p.kind, p.facts);
    await this.mailer.send({ to: p.to, subject, text }, { kind: p.kind, userId });
  }

  /** Sends a token mail after commit; a failure is logged (by the mailer) and dropped, as the caller has answered already. */
  async #deliver(p: Planned, userId: string): Promise<void> {
    try {
      await this.#send(p, userId);
    } catch {
      this.logger.warn({ kind: p.kind, userId }, "token mail dropped");
    }
  }
}
