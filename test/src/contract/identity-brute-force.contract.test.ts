/**
 * Identity against guessing and flooding, through the typed clients against
 * real tenancy, identity, Postgres, NATS and an SMTP listener: second-factor
 * codes counted per user across challenges (and the user told), concurrent
 * sign-ins checked in turn without refusing correct ones, failures answered
 * before they are written, reset mails and passkey sign-ins throttled,
 * expired rows cleaned up, and tenancy's answers cached without delaying a
 * suspension.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import argon2 from "argon2";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService, MfaService, PasskeyService, TenancyService, type TokenPair } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { adminUrl, bootstrapToken, clientFor, eventually, startTestService, testDatabase } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { anonymousAuth, createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";
import { eventTypesFor, identityQuery, type IdentityMesh } from "./support-identity.js";
import { startMailbox, type Mailbox } from "./support-mail.js";
import { roomInStep, totpCode, wrongTotpCode } from "./support-totp.js";
import { SoftwareAuthenticator } from "./support-webauthn.js";

let mailbox: Mailbox;
let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mailbox = await startMailbox();
  // One subject prefix, as in a deployment: identity sees tenancy's events and tenant states.
  const tenancy = await startTestService(tenancyModule);
  const identity = await startTestService(identityModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl, SMTP_URL: mailbox.url } });
  mesh = {
    tenancy,
    identity,
    tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken),
    async stop() {
      await identity.stop();
      await tenancy.stop();
    },
  };
  tenant = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
  await mailbox?.stop();
});

/** The code name a call ends with: "OK" or the ConnectError's code. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

/** Counts argon2 verifications (identity's PasswordHasher calls the same module) while `fn` runs. */
async function countingVerifications<T>(fn: () => Promise<T>): Promise<{ result: T; verifications: number; lockExpiries: number }> {
  const real = argon2.verify;
  let verifications = 0;
  argon2.verify = ((...args: Parameters<typeof real>) => {
    verifications++;
    return real(...args);
  }) as typeof real;
  const started = Date.now();
  try {
    const result = await fn();
    return { result, verifications, lockExpiries: lockExpiriesWithin(Date.now() - started) };
  } finally {
    argon2.verify = real;
  }
}

/**
 * How many of the account's locks (1 s, then 2 s, 4 s, …: they double) can
 * have run out within `ms`: after each, one more guess is checked by design.
 * A burst that lasts under a second (a quiet machine) allows none.
 */
function lockExpiriesWithin(ms: number): number {
  return Math.floor(Math.log2(1 + ms / 1000));
}

/** A counter row of identity's sign-in throttle. */
async function counter(key: string): Promise<{ failures: number; pending: number; locked_until: Date | null } | undefined> {
  const rows = await identityQuery<{ failures: number; pending: number; locked_until: Date | null }>(mesh, "select failures, pending, locked_until from $schema.sign_in_throttles where key = $1", [key]);
  return rows[0] === undefined ? undefined : { ...rows[0] };
}

const mfaFrom = (ip: string) => clientFor(MfaService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": ip });

/** A user with confirmed TOTP (the confirmation spent the previous step's code). */
async function enrolledUser(): Promise<{ user: TestUser; secret: string }> {
  await roomInStep();
  const user = await createUser(mesh, tenant);
  const tokens: TokenPair = await signIn(mesh, user);
  const client = clientFor(MfaService, mesh.identity.baseUrl, tokens.accessToken);
  const { secret } = await client.enrollTotp({});
  await client.confirmTotp({ code: totpCode(secret, -1) });
  return { user, secret };
}

/** The right password: an MFA challenge. */
async function challengeFor(user: TestUser, ip = "10.77.0.1"): Promise<string> {
  const res = await anonymousAuth(mesh, ip).signIn({ tenantSlug: user.tenant.slug, email: user.email, password: user.password, device: "phone" });
  assert.equal(res.result.case, "mfaChallenge");
  return res.result.value.challengeToken;
}

describe("second-factor codes are counted per user across challenges", () => {
  test("with the right password, wrong codes spread over many challenges get five checks per lock, then RESOURCE_EXHAUSTED, and the user is mailed once", async () => {
    const { user, secret } = await enrolledUser();
    const outcomes: string[] = [];
    for (let i = 0; i < 12; i++) {
      // A fresh challenge from the right password each time, from ever other addresses.
      const challengeToken = await challengeFor(user, `10.78.${i}.1`);
      outcomes.push(await outcome(mfaFrom(`10.79.${i}.1`).verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: wrongTotpCode(secret, i * 7) } })));
    }
    assert.deepEqual(outcomes, [...Array<string>(5).fill("Unauthenticated"), ...Array<string>(7).fill("ResourceExhausted")]);
    // Locked means no code is checked, not even the right one.
    await refusedWith(mfaFrom("10.79.99.1").verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: totpCode(secret) } }), Code.ResourceExhausted, "retry after");
    const row = await counter(`mfa:${user.id}`);
    assert.equal(row?.failures, 5);
    assert.ok(row!.locked_until!.getTime() > Date.now() + 30_000, "the first lock lasts a minute");

    const [mail] = await mailbox.await(user.email, "Someone is guessing your two-step verification codes");
    assert.match(mail!.text, /5 wrong two-step verification codes/);
    assert.match(mail!.text, /knew your password/);
    assert.deepEqual((await eventTypesFor(mesh, tenant.id, user.id)).filter((t) => t === "user.mfa_codes_guessed"), ["user.mfa_codes_guessed"], "one event for the lock, none per refused code");
    const events = await identityQuery<{ id: string; envelope: Buffer }>(mesh, "select id, envelope from $schema.outbox where subject like '%.identity.user.mfa_codes_guessed'");
    const event = events.find((e) => e.envelope.includes(Buffer.from(user.id)));
    await eventually(async () => (await identityQuery(mesh, "select 1 from $schema.inbox where consumer = 'identity_notifications' and event_id = $1", [event!.id])).length > 0, 10_000);
    assert.equal(mailbox.to(user.email, "Someone is guessing your two-step verification codes").length, 1);
  });

  test("wrong codes also count on the client address", async () => {
    const { user, secret } = await enrolledUser();
    await refusedWith(mfaFrom("10.80.1.1").verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: wrongTotpCode(secret) } }), Code.Unauthenticated, "the code is not valid");
    assert.equal((await counter("ip:10.80.1.1"))?.failures, 1);
  });

  test("a right password does not clear an MFA user's password failures; the passed second factor does", async () => {
    const { user, secret } = await enrolledUser();
    for (let i = 0; i < 3; i++) await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: `Wrong-password-${i}-xyz`, device: "" }), Code.Unauthenticated);
    const challengeToken = await challengeFor(user);
    const account = `acct:${tenant.slug}:${user.email}`;
    assert.equal((await counter(account))?.failures, 3, "the password alone proves too little to forget the guesses");
    await roomInStep();
    const { tokens } = await mfaFrom("10.81.1.1").verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: totpCode(secret) } });
    assert.ok(tokens !== undefined);
    assert.equal((await counter(account))?.failures, 0);
    assert.equal((await counter(`mfa:${user.id}`))?.failures, 0);
  });
});

describe("concurrent sign-ins of one account", () => {
  test("10 simultaneous correct sign-ins of one account, with no failure before, all succeed", async () => {
    const user = await createUser(mesh, tenant);
    const { result, verifications } = await countingVerifications(() => Promise.all(Array.from({ length: 10 }, (_, i) => outcome(anonymousAuth(mesh, `10.90.0.${i + 1}`).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "" })))));
    assert.deepEqual(result, Array<string>(10).fill("OK"));
    assert.equal(verifications, 10);
    assert.deepEqual(await counter(`acct:${tenant.slug}:${user.email}`), { failures: 0, pending: 0, locked_until: null });
  });

  test("of 50 simultaneous wrong guesses at one account at most 5 passwords are verified (one more after each lock runs out), and the counter agrees", async () => {
    const user = await createUser(mesh, tenant);
    const { result, verifications, lockExpiries } = await countingVerifications(() =>
      Promise.all(Array.from({ length: 50 }, (_, i) => outcome(anonymousAuth(mesh, `10.91.${Math.floor(i / 250)}.${(i % 250) + 1}`).signIn({ tenantSlug: tenant.slug, email: user.email, password: `Wrong-guess-number-${i}`, device: "" })))),
    );
    const checked = result.filter((c) => c === "Unauthenticated").length;
    assert.ok(checked >= 1 && checked <= 5 + lockExpiries, `expected 1..${5 + lockExpiries} checked guesses, got ${result.join(",")}`);
    assert.equal(result.filter((c) => c === "ResourceExhausted").length, 50 - checked);
    assert.ok(verifications <= 5 + lockExpiries, `argon2 ran ${verifications} times`);
    assert.equal(verifications, checked, "every UNAUTHENTICATED was one verification, every refusal none");
    await eventually(async () => (await counter(`acct:${tenant.slug}:${user.email}`))?.pending === 0);
    const row = await counter(`acct:${tenant.slug}:${user.email}`);
    assert.equal(row?.failures, checked);
    assert.ok(row!.locked_until !== null, "the fifth failure locked the account");
  });
});

describe("concurrent sign-ins across two replicas", () => {
  test("with a second replica on the same counters, 10 correct sign-ins split over both succeed, and of 50 wrong guesses split over both at most 5 are verified (one more after each lock runs out)", async () => {
    const second = await startTestService(identityModule, {
      reuse: { schema: mesh.identity.config.DATABASE_SCHEMA, prefix: mesh.identity.prefix },
      keep: true,
      // The same mesh: the replica opens identity's sealed signing keys through the same keys service.
      env: { TENANCY_URL: mesh.tenancy.baseUrl, KEYS_URL: mesh.identity.config.KEYS_URL, SMTP_URL: mailbox.url },
    });
    try {
      const via = (i: number, ip: string) => clientFor(AuthService, i % 2 === 0 ? mesh.identity.baseUrl : second.baseUrl, undefined, "grpc", { "x-forwarded-for": ip });
      const user = await createUser(mesh, tenant);
      const correct = await Promise.all(Array.from({ length: 10 }, (_, i) => outcome(via(i, `10.97.0.${i + 1}`).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "" }))));
      assert.deepEqual(correct, Array<string>(10).fill("OK"));

      const target = await createUser(mesh, tenant);
      const { result, verifications, lockExpiries } = await countingVerifications(() =>
        Promise.all(Array.from({ length: 50 }, (_, i) => outcome(via(i, `10.98.0.${i + 1}`).signIn({ tenantSlug: tenant.slug, email: target.email, password: `Wrong-guess-number-${i}`, device: "" })))),
      );
      const checked = result.filter((c) => c === "Unauthenticated").length;
      assert.ok(verifications <= 5 + lockExpiries && verifications === checked, `argon2 ran ${verifications} times for ${checked} refusals: ${result.join(",")}`);
      assert.equal(result.filter((c) => c === "ResourceExhausted").length, 50 - checked);
    } finally {
      await second.stop();
    }
  });
});

describe("a failed sign-in is answered before it is written", () => {
  test("with identity's outbox locked, a real user's wrong password and an unknown email are both answered, and the failure event follows once the lock is gone", async () => {
    const user = await createUser(mesh, tenant);
    const url = new URL(adminUrl);
    url.pathname = `/${testDatabase}`;
    const admin = new pg.Client({ connectionString: url.toString() });
    await admin.connect();
    const schema = mesh.identity.config.DATABASE_SCHEMA;
    try {
      await admin.query("begin");
      await admin.query(`lock table "${schema}".outbox in access exclusive mode`);
      // Writing the failure before answering would wait for the lock and miss the deadline.
      const auth = anonymousAuth(mesh, "10.92.0.1");
      const wrong = await outcome(auth.signIn({ tenantSlug: tenant.slug, email: user.email, password: "Wrong-password-but-long", device: "" }, { timeoutMs: 8_000 }));
      const unknown = await outcome(auth.signIn({ tenantSlug: tenant.slug, email: "nobody.at.all@example.test", password: "Wrong-password-but-long", device: "" }, { timeoutMs: 8_000 }));
      assert.deepEqual([wrong, unknown], ["Unauthenticated", "Unauthenticated"]);
      const written = await admin.query<{ envelope: Buffer }>(`select envelope from "${schema}".outbox where subject like '%.identity.user.sign_in_failed'`);
      assert.equal(written.rows.filter((r) => r.envelope.includes(Buffer.from(user.id))).length, 0, "nothing was written before the answers");
    } finally {
      await admin.query("commit").catch(() => undefined);
      await admin.end();
    }
    await eventually(async () => (await eventTypesFor(mesh, tenant.id, user.id)).includes("user.sign_in_failed"), 10_000);
    await eventually(async () => (await counter(`acct:${tenant.slug}:nobody.at.all@example.test`))?.failures === 1);
    assert.equal((await counter(`acct:${tenant.slug}:${user.email}`))?.failures, 1, "both failures counted alike");
  });
});

describe("reset mails and passkey sign-ins are throttled", () => {
  test("RequestPasswordReset mails one account at most three times an hour; further requests get the same empty answer and send nothing", async () => {
    const user = await createUser(mesh, tenant);
    const auth = anonymousAuth(mesh, "10.93.0.1");
    // Known or not, throttled or not: the same empty answer.
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await auth.requestPasswordReset({ tenantSlug: tenant.slug, email: user.email }));
    for (let i = 0; i < 5; i++) answers.push(await auth.requestPasswordReset({ tenantSlug: tenant.slug, email: "nobody.resets@example.test" }));
    assert.deepEqual(new Set(answers.map((a) => JSON.stringify(a))).size, 1);
    await mailbox.await(user.email, "Reset your password", 3);
    const tokens = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.password_reset_tokens where user_id = $1", [user.id]);
    assert.equal(tokens[0]?.n, 3);
    assert.equal(mailbox.to(user.email, "Reset your password").length, 3);
    assert.equal((await counter(`reset:${tenant.slug}:nobody.resets@example.test`))?.failures, 3, "unknown accounts are counted alike");
  });

  test("one address has at most twenty reset requests an hour acted on, whatever accounts they name", async () => {
    const user = await createUser(mesh, tenant);
    const spray = anonymousAuth(mesh, "10.94.0.1");
    await Promise.all(Array.from({ length: 20 }, (_, i) => spray.requestPasswordReset({ tenantSlug: tenant.slug, email: `sprayed.${i}@example.test` })));
    await spray.requestPasswordReset({ tenantSlug: tenant.slug, email: user.email });
    const count = async () => (await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.password_reset_tokens where user_id = $1", [user.id]))[0]?.n;
    assert.equal(await count(), 0, "the twenty-first request from the address sent nothing");
    await anonymousAuth(mesh, "10.94.0.2").requestPasswordReset({ tenantSlug: tenant.slug, email: user.email });
    assert.equal(await count(), 1, "another address is not held back");
  });

  test("BeginPasskeySignIn is refused from an address after 60 calls in five minutes, so the challenges it stores stay bounded", async () => {
    const t = await tenantWithSlug(mesh);
    const from = (ip: string) => clientFor(PasskeyService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": ip });
    for (let i = 0; i < 60; i++) await from("10.95.0.1").beginPasskeySignIn({ tenantSlug: t.slug });
    await refusedWith(from("10.95.0.1").beginPasskeySignIn({ tenantSlug: t.slug }), Code.ResourceExhausted, "retry after");
    await from("10.95.0.2").beginPasskeySignIn({ tenantSlug: t.slug });
    const stored = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.webauthn_challenges where tenant_id = $1", [t.id]);
    assert.equal(stored[0]?.n, 61);
  });

  test("a refused FinishPasskeySignIn counts on the address, and a locked address is refused before any check", async () => {
    const anon = clientFor(PasskeyService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.96.0.1" });
    const stranger = new SoftwareAuthenticator();
    stranger.create(JSON.stringify({ challenge: "x", rp: { name: "elsewhere" }, user: { id: "c29tZW9uZQ", name: "someone" } }));
    const begun = await anon.beginPasskeySignIn({ tenantSlug: tenant.slug });
    await refusedWith(anon.finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: stranger.get(begun.optionsJson), device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
    assert.equal((await counter("ip:10.96.0.1"))?.failures, 1);
    await identityQuery(mesh, "update $schema.sign_in_throttles set failures = 100, locked_until = now() + interval '10 minutes' where key = 'ip:10.96.0.1'");
    const again = await anon.beginPasskeySignIn({ tenantSlug: tenant.slug });
    await refusedWith(anon.finishPasskeySignIn({ challengeId: again.challengeId, responseJson: stranger.get(again.optionsJson), device: "", mfaChallengeToken: "" }), Code.ResourceExhausted, "retry after");
    const unused = await identityQuery(mesh, "select 1 from $schema.webauthn_challenges where hash = encode(sha256(convert_to($1, 'UTF8')), 'hex') and used_at is null", [again.challengeId]);
    assert.equal(unused.length, 1, "the locked address's attempt touched nothing");
  });
});

describe("tenancy's answers are cached in identity", () => {
  test("a tenant suspended after its users signed in refuses their next sign-in as soon as the tenant gate knows", async () => {
    const t = await tenantWithSlug(mesh);
    const user = await createUser(mesh, t);
    await signIn(mesh, user);
    await mesh.tenancyOps.suspendTenant({ tenantId: t.id, reason: "test" });
    await eventually(async () => (await outcome(anonymousAuth(mesh).signIn({ tenantSlug: t.slug, email: user.email, password: user.password, device: "" }))) === "Unauthenticated", 2_000);
    await mesh.tenancyOps.reactivateTenant({ tenantId: t.id });
    await eventually(async () => (await outcome(anonymousAuth(mesh).signIn({ tenantSlug: t.slug, email: user.email, password: user.password, device: "" }))) === "OK", 5_000);
  });

  test("a changed security policy applies to the next sign-ins once tenancy's event arrives", async () => {
    const t = await tenantWithSlug(mesh);
    const user = await createUser(mesh, t);
    const lifetime = async () => {
      const tokens = await signIn(mesh, user);
      return Number(tokens.accessTokenExpireTime!.seconds) - Math.floor(Date.now() / 1000);
    };
    assert.ok((await lifetime()) > 1_700);
    await mesh.tenancyOps.updateSecurityPolicy({ tenantId: t.id, policy: { accessTokenLifetime: { seconds: 600n } }, updateMask: { paths: ["access_token_lifetime"] } });
    await eventually(async () => (await lifetime()) <= 600, 5_000);
  });
});
