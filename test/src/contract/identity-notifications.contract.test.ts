/**
 * Identity's security notifications against a real SMTP listener on
 * loopback: the mails a user gets when something happens to their account,
 * the one-time tokens that only travel by mail (password reset, email
 * change), and the inbox that keeps a redelivered event from mailing twice.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { TenancyService, UserService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { jetstream } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nuid";
import { connect } from "@nats-io/transport-node";
import { bootstrapToken, clientFor, eventually, natsUrl, startTestService } from "../support/harness.js";
import { anonymousAuth, createUser, goodPassword, signIn, tenantWithSlug, withToken, type TestTenant, type TestUser } from "./support-auth.js";
import { identityQuery, invite, operatorIn, uniqueEmail, type IdentityMesh } from "./support-identity.js";
import { startMailbox, type Mailbox, type ReceivedMail } from "./support-mail.js";

let mailbox: Mailbox;
/** Where invitation links point (with a trailing slash, which the config drops). */
const publicBaseUrl = "https://app.example.test/console/";
let mesh: IdentityMesh;

before(async () => {
  mailbox = await startMailbox();
  const tenancy = await startTestService(tenancyModule);
  const identity = await startTestService(identityModule, { env: { TENANCY_URL: tenancy.baseUrl, SMTP_URL: mailbox.url, PUBLIC_BASE_URL: publicBaseUrl } });
  mesh = {
    tenancy,
    identity,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async stop() {
      await identity.stop();
      await tenancy.stop();
    },
  };
});

after(async () => {
  await mesh?.stop();
  await mailbox?.stop();
});

/** The mails to one address with this subject. */
function mailsTo(address: string, subject: string): ReceivedMail[] {
  return mailbox.to(address, subject);
}

/** Waits for the first mail to `address` with `subject`. */
async function mailTo(address: string, subject: string): Promise<ReceivedMail> {
  return (await mailbox.await(address, subject))[0]!;
}

/** The one-time token of a mail (on its own indented line). */
function tokenIn(mail: ReceivedMail): string {
  const m = /^ {2}([A-Za-z0-9_-]{32,})$/m.exec(mail.text);
  assert.ok(m !== null, "the mail carries a token");
  return m[1]!;
}

/** The token of an invitation mail's link. */
function tokenOfLink(mail: ReceivedMail): string {
  const link = /^ {2}(https:\/\/\S+)$/m.exec(mail.text)?.[1];
  assert.ok(link !== undefined, "the mail carries a link");
  return new URL(link).searchParams.get("token") ?? "";
}

/** The id of the last event of one type about one user. */
async function lastEventId(tenantId: string, userId: string, verb: string): Promise<string> {
  const rows = await identityQuery<{ id: string; subject: string; envelope: Buffer }>(mesh, "select id, subject, envelope from $schema.outbox where tenant_id = $1 order by created_at desc, id desc", [tenantId]);
  const subject = `${mesh.identity.prefix}.identity.user.${verb}`;
  for (const r of rows) {
    if (r.subject === subject && r.envelope.includes(Buffer.from(userId))) return r.id;
  }
  throw new Error(`no ${verb} event for ${userId}`);
}

/** Waits until the notifier's consumer has handled (inboxed) an event. */
async function handled(eventId: string): Promise<void> {
  await eventually(async () => (await identityQuery(mesh, "select 1 from $schema.inbox where consumer = 'identity_notifications' and event_id = $1", [eventId])).length > 0, 10_000);
}

async function refusedWith(p: Promise<unknown>, code: Code): Promise<void> {
  await assert.rejects(p, (err: unknown) => ConnectError.from(err).code === code);
}

describe("identity notifications", () => {
  let tenant: TestTenant;
  before(async () => {
    tenant = await tenantWithSlug(mesh);
  });

  test("a password reset mail carries a token that ResetPassword accepts, and the reset is notified", async () => {
    const user = await createUser(mesh, tenant);
    await anonymousAuth(mesh).requestPasswordReset({ tenantSlug: tenant.slug, email: user.email });
    const mail = await mailTo(user.email, "Reset your password");
    const token = tokenIn(mail);
    assert.ok(!mail.text.includes(user.password));
    const newPassword = goodPassword();
    await anonymousAuth(mesh).resetPassword({ resetToken: token, newPassword });
    user.password = newPassword;
    await signIn(mesh, user);
    const notice = await mailTo(user.email, "Your password was changed");
    assert.match(notice.text, /reset with a reset token/);
    assert.ok(!notice.text.includes(token));
  });

  test("a password change sends a notice to the user", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    await withToken(mesh, tokens.accessToken).auth.changePassword({ currentPassword: user.password, newPassword: goodPassword() });
    const notice = await mailTo(user.email, "Your password was changed");
    assert.match(notice.text, /Pat Example/);
    assert.equal(mailsTo(user.email, "Your password was changed").length, 1);
  });

  test("a sign-in from a new device is notified once, and not the user's first sign-in", async () => {
    const user = await createUser(mesh, tenant);
    await signIn(mesh, user, "laptop", anonymousAuth(mesh));
    await handled(await lastEventId(tenant.id, user.id, "signed_in"));
    assert.equal(mailsTo(user.email, "New sign-in to your account").length, 0, "the first sign-in is not news");
    const phone = anonymousAuth(mesh);
    await signIn(mesh, user, "phone", phone);
    const notice = await mailTo(user.email, "New sign-in to your account");
    assert.match(notice.text, /device: phone/);
    const again = await signIn(mesh, user, "phone", phone);
    // A sign-in from a known device is acknowledged without a transaction (no
    // inbox row), so a later event that does mail marks when it was consumed:
    // the consumer handles a stream in order.
    await withToken(mesh, again.accessToken).auth.changePassword({ currentPassword: user.password, newPassword: goodPassword() });
    await mailTo(user.email, "Your password was changed");
    assert.equal(mailsTo(user.email, "New sign-in to your account").length, 1, "the same device again sends nothing");
  });

  test("an email change mails a token to the new address and a notice to the old; confirming moves sign-in to the new address", async () => {
    const user: TestUser = await createUser(mesh, tenant);
    const oldEmail = user.email;
    const newEmail = uniqueEmail("moved");
    const ops = operatorIn(mesh, tenant.id).users;
    const res = await ops.requestEmailChange({ userId: user.id, newEmail });
    assert.ok(res.expireTime !== undefined);
    const confirm = await mailTo(newEmail, "Confirm your new email address");
    const token = tokenIn(confirm);
    const notice = await mailTo(oldEmail, "Your email address is about to change");
    assert.ok(!notice.text.includes(token), "the old address never sees the token");
    assert.equal(mailsTo(oldEmail, "Confirm your new email address").length, 0);
    const events = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where tenant_id = $1", [tenant.id]);
    assert.ok(events.every((e) => !e.envelope.includes(Buffer.from(token))), "no event carries the token");

    const { user: changed } = await anonymousUsers().confirmEmailChange({ token });
    assert.equal(changed?.email, newEmail);
    await refusedWith(anonymousUsers().confirmEmailChange({ token }), Code.FailedPrecondition);
    await refusedWith(anonymousUsers().confirmEmailChange({ token: "x".repeat(43) }), Code.FailedPrecondition);
    await refusedWith(signIn(mesh, { ...user, email: oldEmail }), Code.Unauthenticated);
    await signIn(mesh, { ...user, email: newEmail });
    const changedNotice = await mailTo(oldEmail, "Your email address was changed");
    assert.match(changedNotice.text, new RegExp(newEmail.replace(/[.]/g, "\\.")));
  });

  test("an email change to an address taken in the tenant is ALREADY_EXISTS", async () => {
    const a = await createUser(mesh, tenant);
    const b = await createUser(mesh, tenant);
    await refusedWith(operatorIn(mesh, tenant.id).users.requestEmailChange({ userId: a.id, newEmail: b.email }), Code.AlreadyExists);
    await refusedWith(operatorIn(mesh, tenant.id).users.requestEmailChange({ userId: a.id, newEmail: a.email }), Code.InvalidArgument);
  });

  test("an invitee receives the invitation link by mail, and the inviter never sees the token", async () => {
    const email = uniqueEmail("invitee");
    const { user, invitationToken } = await operatorIn(mesh, tenant.id).users.createUser({ email, displayName: "Ivy Invitee" });
    assert.equal(invitationToken, "", "CreateUser returns no token unless asked");
    const mail = await mailTo(email, "You were invited to Bulwark");
    const link = /^ {2}(https:\/\/\S+)$/m.exec(mail.text)?.[1];
    assert.ok(link !== undefined, mail.text);
    const url = new URL(link);
    assert.equal(`${url.origin}${url.pathname}`, "https://app.example.test/console/accept-invitation");
    const token = url.searchParams.get("token") ?? "";
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.match(mail.text, /Ivy Invitee/);
    assert.equal(mailbox.mails.filter((m) => m.text.includes(token)).length, 1, "only the invitee's mail carries the token");
    const events = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where tenant_id = $1", [tenant.id]);
    assert.ok(events.every((e) => !e.envelope.includes(Buffer.from(token))), "no event carries the token");
    const { user: active } = await anonymousUsers().acceptInvitation({ invitationToken: token, password: goodPassword() });
    assert.equal(active?.id, user?.id);
    assert.equal(mailsTo(email, "You were invited to Bulwark").length, 1, "one invitation mail");
  });

  test("an invitation asked for by the inviter is still mailed to the invitee", async () => {
    const email = uniqueEmail("both");
    const { token } = await invite(mesh, tenant.id, [], email);
    assert.equal(tokenOfLink(await mailTo(email, "You were invited to Bulwark")), token);
  });

  test("a redelivered event sends no second mail", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    await withToken(mesh, tokens.accessToken).auth.changePassword({ currentPassword: user.password, newPassword: goodPassword() });
    await mailTo(user.email, "Your password was changed");
    const eventId = await lastEventId(tenant.id, user.id, "password_changed");
    const [row] = await identityQuery<{ subject: string; envelope: Buffer }>(mesh, "select subject, envelope from $schema.outbox where id = $1", [eventId]);
    assert.ok(row !== undefined);
    // The same envelope again under a new message id, so JetStream's own dedupe lets it through.
    const nc = await connect({ servers: natsUrl });
    try {
      const ack = await jetstream(nc).publish(row.subject, new Uint8Array(row.envelope), { msgID: nuid.next() });
      assert.equal(ack.duplicate, false, "the copy reached the stream");
    } finally {
      await nc.drain();
    }
    // A later event of the same stream: once its mail is out, the copy before it was handled.
    const later = await createUser(mesh, tenant);
    await operatorIn(mesh, tenant.id).users.requestEmailChange({ userId: later.id, newEmail: uniqueEmail("later") });
    await mailTo(later.email, "Your email address is about to change");
    assert.equal(mailsTo(user.email, "Your password was changed").length, 1);
  });
});

/** UserService without a credential (ConfirmEmailChange is public). */
function anonymousUsers() {
  return clientFor(UserService, mesh.identity.baseUrl);
}
