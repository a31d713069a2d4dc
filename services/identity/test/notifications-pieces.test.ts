/**
 * Unit tests of the notifications part that need no database, NATS or mail
 * server: the texts of each kind, the mailer without SMTP_URL, and the
 * email-change token helpers.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Logger } from "@bulwark/core";
import { smtpMailer } from "../src/notifications/mailer.js";
import { composeMessage, type NotificationKind } from "../src/notifications/messages.js";
import { deliverEmailChangeTokensTo, droppingEmailChangeSink, emailChangeSinkOf, hashEmailChangeToken, newEmailChangeToken } from "../src/users/email-change.js";
import type { Database } from "@bulwark/db";

const everyKind: NotificationKind[] = [
  "password_reset",
  "password_changed",
  "email_change_confirm",
  "email_change_requested",
  "email_changed",
  "passkey_added",
  "mfa_disabled",
  "recovery_codes_viewed",
  "recovery_code_used",
  "invited",
  "new_device_sign_in",
  "mfa_codes_guessed",
];

/** A logger that records what it was asked to log. */
function recordingLogger(): { logger: Logger; lines: { level: string; obj: unknown; msg: string }[] } {
  const lines: { level: string; obj: unknown; msg: string }[] = [];
  const at = (level: string) => (obj: unknown, msg: string) => void lines.push({ level, obj, msg });
  const logger = { info: at("info"), warn: at("warn"), debug: at("debug"), error: at("error") } as unknown as Logger;
  return { logger, lines };
}

describe("notification texts", () => {
  test("each kind has its own subject", () => {
    const subjects = everyKind.map((k) => composeMessage(k, { displayName: "Ada" }).subject);
    assert.equal(new Set(subjects).size, everyKind.length);
  });

  test("only the reset and confirmation mails carry the token they exist to deliver", () => {
    const token = newEmailChangeToken();
    for (const kind of everyKind) {
      const { text } = composeMessage(kind, { displayName: "Ada", token, expiresAt: new Date(0) });
      assert.equal(text.includes(token), kind === "password_reset" || kind === "email_change_confirm", kind);
    }
  });

  test("an invitation mail carries the link to accept it and until when it works, and nothing else secret", () => {
    const link = "https://app.example.test/accept-invitation?token=abc_DEF-123";
    const { subject, text } = composeMessage("invited", { displayName: "Ada", link, expiresAt: new Date("2030-01-02T03:04:05Z"), token: "not-this" });
    assert.equal(subject, "You were invited to Bulwark");
    assert.ok(text.split("\n").includes(`  ${link}`), text);
    assert.match(text, /valid until 2030-01-02T03:04:05\.000Z and can be used once/);
    assert.ok(!text.includes("not-this"));
  });

  test("a display name cannot add lines to a mail", () => {
    const { text } = composeMessage("mfa_disabled", { displayName: "Ada\r\nBcc: evil@example.test" });
    assert.match(text.split("\n")[0]!, /^Hello Ada Bcc/);
  });

  test("a new-device notice names the device and address", () => {
    const { text } = composeMessage("new_device_sign_in", { displayName: "Ada", device: "phone", ipAddress: "10.1.2.3" });
    assert.match(text, /device: phone/);
    assert.match(text, /address: 10\.1\.2\.3/);
  });
});

describe("the mailer without SMTP_URL", () => {
  test("drops the mail and logs its kind and user id, never the address or the body", async () => {
    const { logger, lines } = recordingLogger();
    const mailer = smtpMailer({ MAIL_FROM: "Bulwark <no-reply@bulwark.local>" }, logger);
    assert.equal(mailer.configured, false);
    await mailer.send({ to: "ada@example.test", subject: "s", text: "secret-token-body" }, { kind: "password_reset", userId: "usr_1" });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, "info");
    assert.equal(lines[0]!.msg, "SMTP not configured; notification not sent");
    assert.deepEqual(lines[0]!.obj, { kind: "password_reset", userId: "usr_1" });
  });
});

describe("email change tokens", () => {
  test("are 256-bit base64url strings stored as their SHA-256", () => {
    const token = newEmailChangeToken();
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(hashEmailChangeToken(token), createHash("sha256").update(token).digest("hex"));
    assert.notEqual(newEmailChangeToken(), token);
  });

  test("go nowhere until the notifications part plugs in a sink", () => {
    const db = {} as Database;
    assert.equal(emailChangeSinkOf(db), droppingEmailChangeSink);
    const sink = { deliver: async () => undefined };
    deliverEmailChangeTokensTo(db, sink);
    assert.equal(emailChangeSinkOf(db), sink);
  });
});
