/**
 * A real SMTP listener on loopback for tests that check the mails identity
 * sends: it keeps every mail it is given, parsed.
 */
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import { SMTPServer } from "smtp-server";
import { eventually } from "../support/harness.js";

/** One mail as the listener received it. */
export interface ReceivedMail {
  readonly to: string[];
  readonly subject: string;
  readonly text: string;
}

/** A listening mailbox. */
export interface Mailbox {
  /** SMTP_URL for the service under test. */
  readonly url: string;
  readonly mails: ReceivedMail[];
  /** The mails to one address with this subject. */
  to(address: string, subject: string): ReceivedMail[];
  /** Waits (up to 10 s) for at least `count` mails to `address` with `subject`. */
  await(address: string, subject: string, count?: number): Promise<ReceivedMail[]>;
  stop(): Promise<void>;
}

/** Starts a mailbox on an ephemeral loopback port. */
export async function startMailbox(): Promise<Mailbox> {
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream).then(
        (parsed) => {
          mails.push({ to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()), subject: parsed.subject ?? "", text: parsed.text ?? "" });
          callback();
        },
        (err: Error) => callback(err),
      );
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.server.address() as AddressInfo;
  const to = (address: string, subject: string): ReceivedMail[] => mails.filter((m) => m.to.includes(address.toLowerCase()) && m.subject === subject);
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    to,
    async await(address, subject, count = 1) {
      await eventually(() => to(address, subject).length >= count, 10_000);
      return to(address, subject);
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
