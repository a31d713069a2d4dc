import nodemailer from "nodemailer";
import type { Logger } from "@bulwark/core";

/** One plain-text email. */
export interface Mail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

/**
 * What a log line may say about a mail: its kind and the user's id. Never
 * the address (personal data) and never the body (it may carry a token).
 */
export interface MailLabel {
  readonly kind: string;
  readonly userId: string;
}

/** Sends mails; `send` rejects when the mail server refused or was unreachable. */
export interface Mailer {
  /** False if no mail server is configured and the mail was dropped. */
  readonly configured: boolean;
  send(mail: Mail, label: MailLabel): Promise<void>;
}

/** A mail the server refused or could not take; the message names no address. */
export class MailError extends Error {
  override name = "MailError";
}

/**
 * The mailer of one service, built from SMTP_URL
 * (`smtp[s]://user:pass@host:port`; smtps is TLS from the first byte, smtp
 * upgrades with STARTTLS when the server offers it). Without SMTP_URL each
 * mail is dropped with an info line naming its kind and user, so a mesh
 * without a mail server still works (resets and email changes just cannot
 * be completed by mail).
 */
export function smtpMailer(config: { SMTP_URL?: string | undefined; MAIL_FROM: string }, logger: Logger): Mailer {
  const url = config.SMTP_URL;
  if (url === undefined || url === "") {
    return {
      configured: false,
      send: async (_mail, label) => {
        logger.info({ kind: label.kind, userId: label.userId }, "SMTP not configured; notification not sent");
      },
    };
  }
  // Short timeouts: a hung server must fail the handler well within the consumer's ack wait.
  const transport = nodemailer.createTransport({ url, connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 });
  return {
    configured: true,
    async send(mail, label) {
      try {
        await transport.sendMail({ from: config.MAIL_FROM, to: mail.to, subject: mail.subject, text: mail.text });
      } catch (cause) {
        // SMTP replies can quote the recipient: log the code only.
        const code = (cause as { code?: unknown; responseCode?: unknown }) ?? {};
        logger.warn({ kind: label.kind, userId: label.userId, code: String(code.code ?? ""), responseCode: Number(code.responseCode ?? 0) }, "notification mail not sent");
        throw new MailError(`the mail server did not take the ${label.kind} mail`, { cause });
      }
      logger.debug({ kind: label.kind, userId: label.userId }, "notification mail sent");
    },
  };
}
