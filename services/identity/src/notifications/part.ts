import type { ConsumerSpec, RuntimeDeps, ServiceRegistration } from "@bulwark/server";
import { streamOf } from "@bulwark/server";
import { deliverResetTokensTo } from "../auth/registrations.js";
import type { IdentityContext } from "../context.js";
import { deliverEmailChangeTokensTo } from "../users/email-change.js";
import { deliverInvitationsTo } from "../users/invitation-token.js";
import { smtpMailer } from "./mailer.js";
import { Notifier } from "./notifier.js";

/**
 * The entities of the notifications part: none (email_change_tokens is
 * read and written with SQL by UserService, like password_reset_tokens).
 */
export const notificationsEntities = [];

const notifiers = new WeakMap<RuntimeDeps, Notifier>();

/** The notifier of one started service (one SMTP transport), created on first use. */
function notifierOf(ctx: IdentityContext): Notifier {
  let n = notifiers.get(ctx.deps);
  if (n === undefined) {
    const logger = ctx.deps.logger.child({ part: "notifications" });
    n = new Notifier(smtpMailer(ctx.deps.config, logger), logger);
    notifiers.set(ctx.deps, n);
  }
  return n;
}

/**
 * No services of its own (RequestEmailChange and ConfirmEmailChange are
 * UserService RPCs); plugs the mailer into the three places that hand over
 * one-time tokens after commit: password resets, email changes and
 * invitations (linking to PUBLIC_BASE_URL).
 */
export function notificationsRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const notifier = notifierOf(ctx);
  deliverResetTokensTo(ctx, notifier.resetTokenSink());
  deliverEmailChangeTokensTo(ctx.deps.db, notifier.emailChangeSink());
  deliverInvitationsTo(ctx.deps.db, notifier.invitationSink(ctx.deps.config.PUBLIC_BASE_URL));
  return [];
}

/**
 * The mailer's durable consumer of identity's user events. Its inbox makes
 * a redelivery harmless, so each event sends at most one mail; a mail
 * server that is down delays mails (retries with backoff) and parks them
 * after about six hours of tries (12 deliveries).
 */
export function notificationsConsumers(ctx: IdentityContext): ConsumerSpec[] {
  const prefix = ctx.deps.config.EVENTS_SUBJECT_PREFIX;
  const notifier = notifierOf(ctx);
  return [
    {
      stream: streamOf(prefix, "identity").name,
      source: "identity",
      durable: "identity_notifications",
      filterSubjects: [`${prefix}.identity.user.>`],
      maxDeliver: 12,
      backoffMs: [1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000],
      ackWaitMs: 60_000,
      relevant: (event) => notifier.concerns(event),
      handle: (event, em) => notifier.handle(event, em),
    },
    {
      // Keys' stream: owners hear of their exposed and expiring API keys.
      // Keys may start after identity (or not be deployed): wait for it.
      stream: streamOf(prefix, "keys").name,
      source: "keys",
      durable: "identity_key_notifications",
      filterSubjects: [`${prefix}.keys.key.>`], // one filter: NATS before 2.10 has no multi-subject consumers
      waitForStream: true,
      maxDeliver: 12,
      backoffMs: [1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000],
      ackWaitMs: 60_000,
      relevant: (event) => notifier.concernsKey(event),
      handle: (event, em) => notifier.handleKey(event, em),
    },
  ];
}
