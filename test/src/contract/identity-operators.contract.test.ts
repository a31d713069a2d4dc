/**
 * bulwark.identity.v1.OperatorService and the `bulwark operator` command,
 * in a mesh of tenancy and identity where tenancy verifies identity's
 * tokens with its ordinary wiring: an operator created on the command line
 * signs in with a password and a TOTP code, and the token it gets opens
 * tenancy's platform-only RPCs that a tenant user's token cannot. Every RPC
 * is tried for its success and each error code its proto documents:
 * sign-in, the second factor and its enrolment, refresh, sign-out, paging,
 * disabling, enabling and resetting an operator's second factor.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { EnvelopeSchema, OperatorMfaResetSchema, OperatorService, OperatorState, TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { decodeJwt } from "jose";
import { bootstrapToken, clientFor, eventually, startMesh, type Started } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { identityQuery, type IdentityMesh } from "./support-identity.js";
import { anonymousOperators, operatorWithTotp } from "./support-operators.js";
import { roomInStep, totpCode, wrongTotpCode } from "./support-totp.js";

const cli = fileURLToPath(new URL("../../../services/identity/dist/src/cli.js", import.meta.url));

/** A password the operator policy accepts. */
const strong = (): string => `Marble-compass-${nuid.next()}-tundra`;
const uniqueOperatorEmail = (label = "op"): string => `${label}.${nuid.next().toLowerCase().slice(-10)}@ops.example.test`;

/** Runs the CLI against identity's schema; resolves with exit code and output. */
function runCli(identity: Started, args: string[], opts: { password?: string; stdin?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = identity.config;
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "",
    NODE_ENV: "test",
    DATABASE_URL: c.DATABASE_URL,
    DATABASE_SCHEMA: c.DATABASE_SCHEMA,
    EVENTS_SUBJECT_PREFIX: c.EVENTS_SUBJECT_PREFIX,
    NATS_URL: c.NATS_URL,
    LOG_LEVEL: "silent",
    ...(opts.password !== undefined ? { BULWARK_OPERATOR_PASSWORD: opts.password } : {}),
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? "");
  });
}

describe("OperatorService and the bulwark operator command", () => {
  let prefix = "";
  let tenancy: Started;
  let identity: Started;
  let mesh: IdentityMesh;
  let tenant: TestTenant;
  const anonymous = () => anonymousOperators(identity.baseUrl);
  const asBootstrap = () => clientFor(OperatorService, identity.baseUrl, bootstrapToken);
  const as = (token: string): Client<typeof OperatorService> => clientFor(OperatorService, identity.baseUrl, token);

  /** Creates an operator as the bootstrap credential, enrols TOTP and signs it in with full tokens. */
  async function signedInOperator(): Promise<{ id: string; email: string; password: string; token: string; refreshToken: string; secret: string }> {
    const email = uniqueOperatorEmail();
    const password = strong();
    await asBootstrap().createOperator({ email, displayName: "Grace Hopper", password });
    const op = await operatorWithTotp(identity.baseUrl, email, password);
    return { id: op.id, email, password, token: op.tokens.accessToken, refreshToken: op.tokens.refreshToken, secret: op.secret };
  }

  /** Creates an operator without a second factor and signs it in (enrolment-only tokens). */
  async function newOperator(): Promise<{ id: string; email: string; password: string; token: string; refreshToken: string }> {
    const email = uniqueOperatorEmail("new");
    const password = strong();
    const { operator } = await asBootstrap().createOperator({ email, displayName: "Newly Made", password });
    const res = await anonymous().signInOperator({ email, password });
    return { id: operator!.id, email, password, token: res.accessToken, refreshToken: res.refreshToken };
  }

  /** A password sign-in of an operator with TOTP: the challenge token. */
  async function challengeOf(op: { email: string; password: string }): Promise<string> {
    const res = await anonymous().signInOperator({ email: op.email, password: op.password });
    assert.ok(res.mfaChallenge !== undefined, "an operator with TOTP gets a challenge");
    assert.equal(res.accessToken, "");
    return res.mfaChallenge.challengeToken;
  }

  /** The outbox events of one operator, as subjects. */
  async function operatorEvents(id: string): Promise<string[]> {
    const rows = await identityQuery<{ subject: string; envelope: Buffer }>(mesh, "select subject, envelope from $schema.outbox where tenant_id is null order by created_at, id");
    return rows.filter((r) => fromBinary(EnvelopeSchema, r.envelope).aggregateId === id).map((r) => r.subject.slice(`${prefix}.identity.`.length));
  }

  before(async () => {
    ({ tenancy, identity, prefix } = await startMesh({ tenancy: tenancyModule, identity: identityModule }));
    mesh = { tenancy, identity, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
    tenant = await tenantWithSlug(mesh);
  });

  after(async () => {
    await identity?.stop();
    await tenancy?.stop();
  });

  describe("CreateOperator", () => {
    test("the bootstrap credential creates an active operator, and operator.created is recorded without the password", async () => {
      const email = uniqueOperatorEmail("create");
      const password = strong();
      const { operator } = await asBootstrap().createOperator({ email: email.toUpperCase(), displayName: "Ada Lovelace", password });
      assert.ok(operator !== undefined);
      assert.match(operator.id, /^opr_/);
      assert.equal(operator.email, email);
      assert.equal(operator.state, OperatorState.ACTIVE);
      assert.equal(operator.lastSignInTime, undefined);
      const rows = await identityQuery<{ subject: string; envelope: Buffer; tenant_id: string | null }>(mesh, "select subject, envelope, tenant_id from $schema.outbox where subject = $1", [`${prefix}.identity.operator.created`]);
      const mine = rows.filter((r) => r.envelope.includes(Buffer.from(operator.id)));
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.tenant_id, null);
      assert.ok(!mine[0]!.envelope.includes(Buffer.from(password)), "no password in the event");
    });

    test("a taken email is ALREADY_EXISTS, a malformed email or weak password INVALID_ARGUMENT naming the field", async () => {
      const email = uniqueOperatorEmail("dup");
      await asBootstrap().createOperator({ email, displayName: "First", password: strong() });
      await refusedWith(asBootstrap().createOperator({ email, displayName: "Second", password: strong() }), Code.AlreadyExists);
      await refusedWith(asBootstrap().createOperator({ email: "not-an-email", displayName: "X", password: strong() }), Code.InvalidArgument, "email");
      await refusedWith(asBootstrap().createOperator({ email: uniqueOperatorEmail(), displayName: "X", password: "short-pw" }), Code.InvalidArgument, "password");
      await refusedWith(asBootstrap().createOperator({ email: uniqueOperatorEmail(), displayName: "X", password: "password123456" }), Code.InvalidArgument, "password");
    });

    test("without a credential it is UNAUTHENTICATED; a tenant principal, even holding every permission, PERMISSION_DENIED", async () => {
      await refusedWith(anonymous().createOperator({ email: uniqueOperatorEmail(), displayName: "X", password: strong() }), Code.Unauthenticated);
      const tenantAdmin = clientFor(OperatorService, identity.baseUrl, identity.issueToken({ id: "usr_x", kind: "user", tenantId: tenant.id, permissions: new Set(["*"]) }));
      await refusedWith(tenantAdmin.createOperator({ email: uniqueOperatorEmail(), displayName: "X", password: strong() }), Code.PermissionDenied);
    });
  });

  describe("SignInOperator", () => {
    test("an operator without a second factor gets one-hour tokens that can only enrol one, without a tenant, and the sign-in is recorded", async () => {
      const email = uniqueOperatorEmail("signin");
      const password = strong();
      const { operator } = await asBootstrap().createOperator({ email, displayName: "Katherine Johnson", password });
      const before = Math.floor(Date.now() / 1000);
      const res = await anonymous().signInOperator({ email: ` ${email.toUpperCase()} `, password });
      assert.equal(res.operatorId, operator!.id);
      assert.equal(res.mfaEnrollmentRequired, true);
      assert.equal(res.mfaChallenge, undefined);
      const claims = decodeJwt(res.accessToken);
      assert.equal(claims.sub, operator!.id);
      assert.equal(claims["ten"], undefined);
      assert.equal(claims["kind"], "operator");
      assert.equal(claims["sid"], res.sessionId);
      assert.deepEqual(claims["perms"], ["identity.operators.self"]);
      const exp = Number(res.accessTokenExpireTime?.seconds);
      assert.ok(exp >= before + 3_590 && exp <= before + 3_610, `expires in ${exp - before} s`);
      const sessionEnd = Number(res.refreshTokenExpireTime?.seconds);
      assert.ok(res.refreshToken.length > 20);
      assert.ok(sessionEnd >= before + 12 * 3_600 - 10 && sessionEnd <= before + 12 * 3_600 + 10, `the session lasts ${sessionEnd - before} s`);
      // Enrolment-only: nothing else, here or on tenancy.
      await refusedWith(as(res.accessToken).listOperators({}), Code.PermissionDenied, "identity.operators.manage");
      await refusedWith(clientFor(TenancyService, tenancy.baseUrl, res.accessToken).listTenants({}), Code.PermissionDenied);
      const [row] = await identityQuery<{ last_sign_in_at: Date | null }>(mesh, "select last_sign_in_at from $schema.operators where id = $1", [operator!.id]);
      assert.ok(row?.last_sign_in_at !== null);
      const events = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where subject = $1", [`${prefix}.identity.operator.signed_in`]);
      assert.ok(events.some((e) => e.envelope.includes(Buffer.from(res.sessionId))));
      assert.ok(!events.some((e) => e.envelope.includes(Buffer.from(password))));
    });

    test("an operator with TOTP gets an MFA challenge instead of tokens, stored only as a hash", async () => {
      const op = await signedInOperator();
      const res = await anonymous().signInOperator({ email: op.email, password: op.password });
      assert.ok(res.mfaChallenge !== undefined);
      assert.deepEqual(res.mfaChallenge.methods, ["totp"]);
      assert.deepEqual([res.accessToken, res.refreshToken, res.sessionId, res.operatorId], ["", "", "", ""]);
      const ttl = Number(res.mfaChallenge.expireTime?.seconds) - Date.now() / 1000;
      assert.ok(ttl > 280 && ttl <= 301, `the challenge lasts ${ttl} s`);
      const stored = await identityQuery<{ hash: string }>(mesh, "select hash from $schema.operator_mfa_challenges where operator_id = $1", [op.id]);
      assert.ok(stored.length >= 1 && stored.every((r) => r.hash !== res.mfaChallenge!.challengeToken));
    });

    test("password sign-ins that never finish their second factor count towards the lock: RESOURCE_EXHAUSTED", async () => {
      const op = await signedInOperator();
      for (let i = 0; i < 5; i++) await challengeOf(op);
      await refusedWith(anonymous().signInOperator({ email: op.email, password: op.password }), Code.ResourceExhausted, /retry after/);
    });

    test("a wrong password, an unknown email and a disabled operator get one and the same UNAUTHENTICATED", async () => {
      const op = await signedInOperator();
      const wrong = await refusedWith(anonymous().signInOperator({ email: op.email, password: `${op.password}x` }), Code.Unauthenticated);
      const unknown = await refusedWith(anonymous().signInOperator({ email: uniqueOperatorEmail("nobody"), password: strong() }), Code.Unauthenticated);
      const other = await signedInOperator();
      await as(other.token).disableOperator({ operatorId: op.id });
      const disabled = await refusedWith(anonymous().signInOperator({ email: op.email, password: op.password }), Code.Unauthenticated);
      assert.equal(wrong.rawMessage, unknown.rawMessage);
      assert.equal(wrong.rawMessage, disabled.rawMessage);
    });

    test("repeated failures lock the operator account: RESOURCE_EXHAUSTED, even with the right password", async () => {
      const op = await newOperator();
      const client = anonymous();
      for (let i = 0; i < 5; i++) await refusedWith(client.signInOperator({ email: op.email, password: "Wrong-password-guess-1" }), Code.Unauthenticated);
      await refusedWith(anonymous().signInOperator({ email: op.email, password: op.password }), Code.ResourceExhausted, /retry after/);
    });

    test("an empty email is INVALID_ARGUMENT naming the field", async () => {
      await refusedWith(anonymous().signInOperator({ email: "", password: "x" }), Code.InvalidArgument, "email");
    });
  });

  describe("VerifyOperatorMfa", () => {
    test("a current code finishes the sign-in with full tokens; the session and operator.signed_in are recorded", async () => {
      const op = await signedInOperator();
      await roomInStep();
      const challenge = await challengeOf(op);
      const { tokens } = await anonymous().verifyOperatorMfa({ challengeToken: challenge, totpCode: totpCode(op.secret) });
      assert.ok(tokens !== undefined);
      assert.equal(tokens.operatorId, op.id);
      assert.equal(tokens.mfaEnrollmentRequired, false);
      assert.deepEqual(decodeJwt(tokens.accessToken)["perms"], ["*"]);
      assert.ok((await clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken).listTenants({})).tenants.some((t) => t.id === tenant.id));
      const [session] = await identityQuery<{ operator_id: string; mfa_pending: boolean }>(mesh, "select operator_id, mfa_pending from $schema.operator_sessions where id = $1", [tokens.sessionId]);
      assert.deepEqual({ ...session }, { operator_id: op.id, mfa_pending: false });
      assert.ok((await operatorEvents(op.id)).includes("operator.signed_in"));
      await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: challenge, totpCode: totpCode(op.secret, 1) }), Code.Unauthenticated, "invalid credentials");
    });

    test("a wrong code, a replayed code, an unknown, expired or exhausted challenge and a disabled operator get one UNAUTHENTICATED", async () => {
      const op = await signedInOperator();
      await roomInStep();
      const first = await challengeOf(op);
      const wrong = await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: first, totpCode: wrongTotpCode(op.secret) }), Code.Unauthenticated);
      await anonymous().verifyOperatorMfa({ challengeToken: first, totpCode: totpCode(op.secret) });
      const replayed = await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: await challengeOf(op), totpCode: totpCode(op.secret) }), Code.Unauthenticated);
      const unknown = await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: "not-a-challenge-token", totpCode: totpCode(op.secret, 1) }), Code.Unauthenticated);
      const expiring = await challengeOf(op);
      await identityQuery(mesh, "update $schema.operator_mfa_challenges set expires_at = now() - interval '1 second' where operator_id = $1", [op.id]);
      const expired = await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: expiring, totpCode: totpCode(op.secret, 1) }), Code.Unauthenticated);
      const exhausting = await challengeOf(op);
      await identityQuery(mesh, "update $schema.operator_mfa_challenges set failed_attempts = 5 where operator_id = $1 and used_at is null", [op.id]);
      const exhausted = await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: exhausting, totpCode: totpCode(op.secret, 1) }), Code.Unauthenticated);
      const pending = await challengeOf(op);
      const other = await signedInOperator();
      await as(other.token).disableOperator({ operatorId: op.id });
      const disabled = await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: pending, totpCode: totpCode(op.secret, 1) }), Code.Unauthenticated);
      assert.deepEqual(new Set([wrong, replayed, unknown, expired, exhausted, disabled].map((e) => e.rawMessage)).size, 1, "one answer for all");
    });

    test("the fifth wrong code ends the challenge, and wrong codes across challenges lock the operator: RESOURCE_EXHAUSTED", async () => {
      const op = await signedInOperator();
      await roomInStep();
      const challenge = await challengeOf(op);
      for (let i = 0; i < 5; i++) await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: challenge, totpCode: wrongTotpCode(op.secret) }), Code.Unauthenticated);
      await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: challenge, totpCode: totpCode(op.secret) }), Code.ResourceExhausted, /retry after/);
      const [row] = await identityQuery<{ failed_attempts: number; used_at: Date | null }>(mesh, "select failed_attempts, used_at from $schema.operator_mfa_challenges where operator_id = $1 and failed_attempts > 0", [op.id]);
      assert.deepEqual({ ...row }, { failed_attempts: 5, used_at: null });
    });

    test("a malformed code or a missing challenge is INVALID_ARGUMENT naming the field", async () => {
      await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: "x", totpCode: "12ab56" }), Code.InvalidArgument, "totp_code");
      await refusedWith(anonymous().verifyOperatorMfa({ challengeToken: "", totpCode: "123456" }), Code.InvalidArgument, "challenge_token");
    });
  });

  describe("EnrollOperatorTotp and ConfirmOperatorTotp", () => {
    test("an operator without a factor enrols TOTP with the enrolment-only token; the secret is stored sealed and operator.mfa_enabled recorded", async () => {
      await roomInStep();
      const op = await newOperator();
      const mine = as(op.token);
      const { secret, otpauthUri } = await mine.enrollOperatorTotp({});
      assert.match(secret, /^[A-Z2-7]{32}$/);
      assert.ok(otpauthUri.startsWith("otpauth://totp/Bulwark:") && otpauthUri.includes(encodeURIComponent(op.email)) && otpauthUri.includes(`secret=${secret}`), otpauthUri);
      const [stored] = await identityQuery<{ secret_ciphertext: Buffer; confirmed_at: Date | null; tenant_id: string | null }>(mesh, "select secret_ciphertext, confirmed_at, tenant_id from $schema.operator_totp_credentials where operator_id = $1", [op.id]);
      assert.equal(stored?.confirmed_at, null);
      assert.equal(stored?.tenant_id, null);
      assert.ok(!stored!.secret_ciphertext.toString("latin1").includes(secret), "sealed, never plaintext");
      // Enrolling again before confirming replaces the pending secret.
      const again = await mine.enrollOperatorTotp({});
      assert.notEqual(again.secret, secret);
      await refusedWith(mine.confirmOperatorTotp({ code: wrongTotpCode(again.secret) }), Code.InvalidArgument, "code");
      await mine.confirmOperatorTotp({ code: totpCode(again.secret, -1) });
      const { operators } = await asBootstrap().listOperators({ pageSize: 500 });
      assert.equal(operators.find((o) => o.id === op.id)?.mfaEnrolled, true);
      assert.ok((await operatorEvents(op.id)).includes("operator.mfa_enabled"));
      await refusedWith(mine.enrollOperatorTotp({}), Code.FailedPrecondition, /already enabled/);
      await refusedWith(mine.confirmOperatorTotp({ code: totpCode(again.secret) }), Code.FailedPrecondition, /already enabled/);
      // From now on a password alone gets a challenge.
      assert.ok((await anonymous().signInOperator({ email: op.email, password: op.password })).mfaChallenge !== undefined);
    });

    test("confirming without a pending enrolment is FAILED_PRECONDITION; repeated wrong codes are RESOURCE_EXHAUSTED; a malformed code INVALID_ARGUMENT", async () => {
      const op = await newOperator();
      const mine = as(op.token);
      await refusedWith(mine.confirmOperatorTotp({ code: "123456" }), Code.FailedPrecondition, /EnrollOperatorTotp/);
      const { secret } = await mine.enrollOperatorTotp({});
      await refusedWith(mine.confirmOperatorTotp({ code: "12345" }), Code.InvalidArgument, "code");
      // Every refused confirmation counts; the threshold's attempt finds the lock.
      const codes: string[] = [];
      for (let i = 0; i < 7 && codes.at(-1) !== "ResourceExhausted"; i++) {
        codes.push(await mine.confirmOperatorTotp({ code: wrongTotpCode(secret) }).then(() => "OK", (err: unknown) => Code[ConnectError.from(err).code]));
      }
      assert.equal(codes.at(-1), "ResourceExhausted", codes.join(", "));
      assert.ok(codes.length >= 3 && codes.slice(0, -1).every((c) => c === "InvalidArgument"), codes.join(", "));
    });

    test("the bootstrap credential is no operator session: FAILED_PRECONDITION; no credential UNAUTHENTICATED; a tenant principal PERMISSION_DENIED", async () => {
      await refusedWith(asBootstrap().enrollOperatorTotp({}), Code.FailedPrecondition, "operator session");
      await refusedWith(asBootstrap().confirmOperatorTotp({ code: "123456" }), Code.FailedPrecondition, "operator session");
      await refusedWith(anonymous().enrollOperatorTotp({}), Code.Unauthenticated);
      await refusedWith(anonymous().confirmOperatorTotp({ code: "123456" }), Code.Unauthenticated);
      const tenantAdmin = as(identity.issueToken({ id: "usr_x", kind: "user", tenantId: tenant.id, permissions: new Set(["*"]) }));
      await refusedWith(tenantAdmin.enrollOperatorTotp({}), Code.PermissionDenied);
      await refusedWith(tenantAdmin.confirmOperatorTotp({ code: "123456" }), Code.PermissionDenied);
    });
  });

  describe("RefreshOperatorTokens", () => {
    test("a refresh token works once and gives new tokens in the same session; the enrolment-only session turns full after enrolling", async () => {
      const op = await signedInOperator();
      const { tokens } = await anonymous().refreshOperatorTokens({ refreshToken: op.refreshToken });
      assert.ok(tokens !== undefined);
      assert.equal(tokens.sessionId, decodeJwt(op.token)["sid"]);
      assert.notEqual(tokens.refreshToken, op.refreshToken);
      assert.deepEqual(decodeJwt(tokens.accessToken)["perms"], ["*"]);
      await as(tokens.accessToken).listOperators({});
      // operatorWithTotp itself refreshed an enrolment-only session into a full one.
      const [session] = await identityQuery<{ mfa_pending: boolean }>(mesh, "select mfa_pending from $schema.operator_sessions where id = $1", [tokens.sessionId]);
      assert.equal(session?.mfa_pending, false);
    });

    test("presenting a used refresh token revokes its session across the mesh", async () => {
      const op = await signedInOperator();
      const { tokens } = await anonymous().refreshOperatorTokens({ refreshToken: op.refreshToken });
      const onTenancy = clientFor(TenancyService, tenancy.baseUrl, tokens!.accessToken);
      await onTenancy.listTenants({});
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: op.refreshToken }), Code.Unauthenticated, "refresh token");
      await refusedWith(as(tokens!.accessToken).listOperators({}), Code.Unauthenticated);
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: tokens!.refreshToken }), Code.Unauthenticated, "refresh token");
      await eventually(async () => (await onTenancy.listTenants({}).then(() => false, () => true)), 2000, 20);
    });

    test("an unknown refresh token, or one of a disabled operator, is UNAUTHENTICATED; an empty one INVALID_ARGUMENT", async () => {
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: "not-a-refresh-token" }), Code.Unauthenticated);
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: "" }), Code.InvalidArgument, "refresh_token");
      const op = await signedInOperator();
      const other = await signedInOperator();
      await as(other.token).disableOperator({ operatorId: op.id });
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: op.refreshToken }), Code.Unauthenticated);
    });
  });

  describe("SignOutOperator", () => {
    test("signing out revokes the session: its access token stops working mesh-wide and its refresh token too", async () => {
      const op = await signedInOperator();
      const onTenancy = clientFor(TenancyService, tenancy.baseUrl, op.token);
      await onTenancy.listTenants({});
      await as(op.token).signOutOperator({});
      await refusedWith(as(op.token).listOperators({}), Code.Unauthenticated);
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: op.refreshToken }), Code.Unauthenticated);
      await eventually(async () => (await onTenancy.listTenants({}).then(() => false, () => true)), 2000, 20);
      const events = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where subject = $1", [`${prefix}.identity.session.revoked`]);
      assert.ok(events.some((e) => e.envelope.includes(Buffer.from(String(decodeJwt(op.token)["sid"])))));
    });

    test("an enrolment-only operator may sign out; the bootstrap credential FAILED_PRECONDITION; no credential UNAUTHENTICATED; a tenant principal PERMISSION_DENIED", async () => {
      const op = await newOperator();
      await as(op.token).signOutOperator({});
      await refusedWith(as(op.token).enrollOperatorTotp({}), Code.Unauthenticated);
      await refusedWith(asBootstrap().signOutOperator({}), Code.FailedPrecondition, "operator session");
      await refusedWith(anonymous().signOutOperator({}), Code.Unauthenticated);
      const user = await createUser(mesh, tenant, { roles: ["system:owner"] });
      const tokens = await signIn(mesh, user);
      await refusedWith(as(tokens.accessToken).signOutOperator({}), Code.PermissionDenied);
    });
  });

  describe("EnableOperator", () => {
    test("a disabled operator is enabled again, keeps their second factor and signs in; operator.enabled is recorded", async () => {
      const admin = await signedInOperator();
      const op = await signedInOperator();
      await as(admin.token).disableOperator({ operatorId: op.id });
      const { operator } = await as(admin.token).enableOperator({ operatorId: op.id });
      assert.equal(operator?.state, OperatorState.ACTIVE);
      assert.equal(operator?.mfaEnrolled, true);
      await roomInStep();
      const { tokens } = await anonymous().verifyOperatorMfa({ challengeToken: await challengeOf(op), totpCode: totpCode(op.secret) });
      assert.equal(tokens?.operatorId, op.id);
      assert.deepEqual((await operatorEvents(op.id)).filter((e) => e === "operator.disabled" || e === "operator.enabled"), ["operator.disabled", "operator.enabled"]);
    });

    test("an unknown operator is NOT_FOUND, an active one FAILED_PRECONDITION, an empty id INVALID_ARGUMENT; an enrolment-only operator or a tenant user PERMISSION_DENIED; no credential UNAUTHENTICATED", async () => {
      const admin = await signedInOperator();
      const ops = as(admin.token);
      await refusedWith(ops.enableOperator({ operatorId: "opr_doesnotexist" }), Code.NotFound);
      await refusedWith(ops.enableOperator({ operatorId: admin.id }), Code.FailedPrecondition, /already active/);
      await refusedWith(ops.enableOperator({ operatorId: "" }), Code.InvalidArgument, "operator_id");
      const fresh = await newOperator();
      await refusedWith(as(fresh.token).enableOperator({ operatorId: admin.id }), Code.PermissionDenied);
      const user = await createUser(mesh, tenant, { roles: ["system:owner"] });
      await refusedWith(as((await signIn(mesh, user)).accessToken).enableOperator({ operatorId: admin.id }), Code.PermissionDenied);
      await refusedWith(anonymous().enableOperator({ operatorId: admin.id }), Code.Unauthenticated);
    });
  });

  describe("ResetOperatorMfa", () => {
    test("another operator removes a lost second factor: the operator's sessions end and their next sign-in can only enrol", async () => {
      const admin = await signedInOperator();
      const op = await signedInOperator();
      const { operator } = await as(admin.token).resetOperatorMfa({ operatorId: op.id });
      assert.equal(operator?.mfaEnrolled, false);
      await refusedWith(as(op.token).listOperators({}), Code.Unauthenticated);
      await refusedWith(anonymous().refreshOperatorTokens({ refreshToken: op.refreshToken }), Code.Unauthenticated);
      const again = await anonymous().signInOperator({ email: op.email, password: op.password });
      assert.equal(again.mfaEnrollmentRequired, true);
      assert.equal((await identityQuery(mesh, "select 1 from $schema.operator_totp_credentials where operator_id = $1", [op.id])).length, 0);
      const rows = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where subject = $1", [`${prefix}.identity.operator.mfa_reset`]);
      const mine = rows.map((r) => fromBinary(EnvelopeSchema, r.envelope)).find((e) => e.aggregateId === op.id);
      assert.ok(mine?.payload !== undefined);
      assert.ok(fromBinary(OperatorMfaResetSchema, mine.payload.value).revokedSessions >= 1);
    });

    test("one's own second factor is FAILED_PRECONDITION, an unknown operator NOT_FOUND, an empty id INVALID_ARGUMENT; a tenant user PERMISSION_DENIED; no credential UNAUTHENTICATED", async () => {
      const admin = await signedInOperator();
      const ops = as(admin.token);
      await refusedWith(ops.resetOperatorMfa({ operatorId: admin.id }), Code.FailedPrecondition, "another operator");
      await refusedWith(ops.resetOperatorMfa({ operatorId: "opr_doesnotexist" }), Code.NotFound);
      await refusedWith(ops.resetOperatorMfa({ operatorId: "" }), Code.InvalidArgument, "operator_id");
      const user = await createUser(mesh, tenant, { roles: ["system:owner"] });
      await refusedWith(as((await signIn(mesh, user)).accessToken).resetOperatorMfa({ operatorId: admin.id }), Code.PermissionDenied);
      await refusedWith(anonymous().resetOperatorMfa({ operatorId: admin.id }), Code.Unauthenticated);
    });
  });

  describe("ListOperators", () => {
    test("pages walk every operator once, oldest first; a foreign page token or an out-of-range size is INVALID_ARGUMENT", async () => {
      const admin = await signedInOperator();
      const ops = as(admin.token);
      for (let i = 0; i < 3; i++) await asBootstrap().createOperator({ email: uniqueOperatorEmail("page"), displayName: `Page ${i}`, password: strong() });
      const everyone = (await ops.listOperators({ pageSize: 500 })).operators.map((o) => o.id);
      const walked: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await ops.listOperators({ pageSize: 2, pageToken });
        assert.ok(page.operators.length <= 2);
        walked.push(...page.operators.map((o) => o.id));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "" && pages < 100);
      assert.deepEqual(walked, everyone);
      assert.ok(pages >= 3, `${pages} pages`);
      const created = (await ops.listOperators({ pageSize: 500 })).operators.map((o) => Number(o.createTime?.seconds));
      assert.deepEqual(created, [...created].sort((a, b) => a - b), "oldest first");
      await refusedWith(ops.listOperators({ pageToken: "bm90LWEtdG9rZW4" }), Code.InvalidArgument, "page_token");
      await refusedWith(ops.listOperators({ pageSize: 501 }), Code.InvalidArgument, "page_size");
    });

    test("an operator token lists operators (never a hash); a tenant user's token is PERMISSION_DENIED; no credential UNAUTHENTICATED", async () => {
      const op = await signedInOperator();
      const { operators } = await clientFor(OperatorService, identity.baseUrl, op.token).listOperators({ pageSize: 500 });
      const me = operators.find((o) => o.id === op.id);
      assert.ok(me !== undefined);
      assert.equal(me.state, OperatorState.ACTIVE);
      assert.ok(me.lastSignInTime !== undefined);
      assert.ok(!JSON.stringify(operators.map((o) => ({ ...o, createTime: undefined, lastSignInTime: undefined }))).includes("argon2"));
      const user = await createUser(mesh, tenant, { roles: ["system:owner"] });
      const tokens = await signIn(mesh, user);
      await refusedWith(clientFor(OperatorService, identity.baseUrl, tokens.accessToken).listOperators({}), Code.PermissionDenied);
      await refusedWith(anonymous().listOperators({}), Code.Unauthenticated);
    });
  });

  describe("DisableOperator", () => {
    test("disabling an operator revokes its token across the mesh at once", async () => {
      const admin = await signedInOperator();
      const victim = await signedInOperator();
      const victimOnTenancy = clientFor(TenancyService, tenancy.baseUrl, victim.token);
      await victimOnTenancy.listTenants({});
      const { operator } = await clientFor(OperatorService, identity.baseUrl, admin.token).disableOperator({ operatorId: victim.id });
      assert.equal(operator?.state, OperatorState.DISABLED);
      await refusedWith(clientFor(OperatorService, identity.baseUrl, victim.token).listOperators({}), Code.Unauthenticated);
      await eventually(async () => {
        try {
          await victimOnTenancy.listTenants({});
          return false;
        } catch {
          return true;
        }
      }, 2000, 20);
      await refusedWith(victimOnTenancy.listTenants({}), Code.Unauthenticated);
    });

    test("an unknown operator is NOT_FOUND, an already disabled one FAILED_PRECONDITION, a tenant user PERMISSION_DENIED", async () => {
      const admin = await signedInOperator();
      const ops = clientFor(OperatorService, identity.baseUrl, admin.token);
      await refusedWith(ops.disableOperator({ operatorId: "opr_doesnotexist" }), Code.NotFound);
      const victim = await signedInOperator();
      await ops.disableOperator({ operatorId: victim.id });
      await refusedWith(ops.disableOperator({ operatorId: victim.id }), Code.FailedPrecondition, /already disabled/);
      await refusedWith(ops.disableOperator({ operatorId: "" }), Code.InvalidArgument, "operator_id");
      const user = await createUser(mesh, tenant, { roles: ["system:owner"] });
      const tokens = await signIn(mesh, user);
      await refusedWith(clientFor(OperatorService, identity.baseUrl, tokens.accessToken).disableOperator({ operatorId: admin.id }), Code.PermissionDenied);
    });
  });

  describe("the bulwark operator command", () => {
    test("creates an operator from BULWARK_OPERATOR_PASSWORD and prints its id; the running identity's relay publishes operator.created", async () => {
      const email = uniqueOperatorEmail("cli");
      const password = strong();
      const res = await runCli(identity, ["operator", "create", "--email", email, "--name", "Ada Cli"], { password });
      assert.equal(res.code, 0, res.stderr);
      const id = res.stdout.trim();
      assert.match(id, /^opr_[0-9a-z]+/);
      await eventually(async () => {
        const rows = await identityQuery<{ sent_at: Date | null; envelope: Buffer }>(mesh, "select sent_at, envelope from $schema.outbox where subject = $1", [`${prefix}.identity.operator.created`]);
        return rows.some((r) => r.sent_at !== null && r.envelope.includes(Buffer.from(id)));
      }, 5000);
      const list = await runCli(identity, ["operator", "list"]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, new RegExp(`${id}\\t${email.replaceAll(".", "\\.")}\\tACTIVE\\tAda Cli`));
    });

    test("reads the password from standard input when the variable is unset", async () => {
      const email = uniqueOperatorEmail("stdin");
      const password = strong();
      const res = await runCli(identity, ["operator", "create", "--email", email, "--name", "Stdin Person"], { stdin: `${password}\n` });
      assert.equal(res.code, 0, res.stderr);
      const signed = await anonymous().signInOperator({ email, password });
      assert.equal(signed.operatorId, res.stdout.trim());
    });

    test("exits 2 on a usage error and 1 on a refused password or a taken email, printing no stack", async () => {
      const missing = await runCli(identity, ["operator", "create", "--name", "No Email"], { password: strong() });
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /--email is required/);
      assert.equal((await runCli(identity, ["operator", "frobnicate"])).code, 2);
      assert.equal((await runCli(identity, [])).code, 2);
      assert.equal((await runCli(identity, ["operator", "create", "--email", "a@b.cd", "--name", "X", "--password", "nope"])).code, 2);
      const weak = await runCli(identity, ["operator", "create", "--email", uniqueOperatorEmail(), "--name", "Weak"], { password: "short" });
      assert.equal(weak.code, 1);
      assert.match(weak.stderr, /password/);
      const email = uniqueOperatorEmail("taken");
      assert.equal((await runCli(identity, ["operator", "create", "--email", email, "--name", "One"], { password: strong() })).code, 0);
      const taken = await runCli(identity, ["operator", "create", "--email", email, "--name", "Two"], { password: strong() });
      assert.equal(taken.code, 1);
      assert.doesNotMatch(taken.stderr, /\n\s+at /);
    });

    test("an operator created on the command line signs in and lists tenants on tenancy; a tenant owner's token is PERMISSION_DENIED there", async () => {
      const email = uniqueOperatorEmail("mesh");
      const password = strong();
      const res = await runCli(identity, ["operator", "create", "--email", email, "--name", "Mesh Operator"], { password });
      assert.equal(res.code, 0, res.stderr);
      const { accessToken } = (await operatorWithTotp(identity.baseUrl, email, password)).tokens;
      const { tenants } = await clientFor(TenancyService, tenancy.baseUrl, accessToken).listTenants({});
      assert.ok(tenants.some((t) => t.id === tenant.id));
      // A real signed-in tenant user: refused as a non-platform principal.
      const user = await createUser(mesh, tenant, { roles: ["system:member"] });
      const tokens = await signIn(mesh, user);
      await refusedWith(clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken).listTenants({}), Code.PermissionDenied, /platform operators only/);
      // The tenant user's token still works where it should.
      assert.equal((await clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken).getTenant({ tenantId: tenant.id })).tenant?.id, tenant.id);
      // Even a tenant principal holding every permission is not a platform principal.
      const everything = tenancy.issueToken({ id: "usr_all", kind: "user", tenantId: tenant.id, permissions: new Set(["*"]) });
      await refusedWith(clientFor(TenancyService, tenancy.baseUrl, everything).listTenants({}), Code.PermissionDenied, /platform operators only/);
    });
  });

  describe("bulwark operator reset-mfa", () => {
    test("removes an operator's second factor from the command line (the way back for a lone operator) and ends their sessions", async () => {
      const op = await signedInOperator();
      const res = await runCli(identity, ["operator", "reset-mfa", "--email", op.email.toUpperCase()]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout.trim(), op.id);
      await eventually(async () => (await clientFor(OperatorService, identity.baseUrl, op.token).listOperators({}).then(() => false, () => true)), 5000, 50);
      assert.equal((await anonymous().signInOperator({ email: op.email, password: op.password })).mfaEnrollmentRequired, true);
      const unknown = await runCli(identity, ["operator", "reset-mfa", "--email", uniqueOperatorEmail("nobody")]);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /no operator has the email/);
    });
  });

  describe("the last active operator", () => {
    test("cannot be disabled: FAILED_PRECONDITION", async () => {
      const last = await signedInOperator();
      const ops = clientFor(OperatorService, identity.baseUrl, last.token);
      for (const o of (await ops.listOperators({ pageSize: 500 })).operators) {
        if (o.id !== last.id && o.state === OperatorState.ACTIVE) await ops.disableOperator({ operatorId: o.id });
      }
      await refusedWith(ops.disableOperator({ operatorId: last.id }), Code.FailedPrecondition, /last active operator/);
      const { operators } = await ops.listOperators({ pageSize: 500 });
      assert.deepEqual(operators.filter((o) => o.state === OperatorState.ACTIVE).map((o) => o.id), [last.id]);
    });
  });
});
