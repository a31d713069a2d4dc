/**
 * bulwark.identity.v1.OperatorService and the `bulwark operator` command,
 * in a mesh of tenancy and identity where tenancy verifies identity's
 * tokens with its ordinary wiring: an operator created on the command line
 * signs in, and the token it gets opens tenancy's platform-only RPCs that a
 * tenant user's token cannot.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Code } from "@connectrpc/connect";
import { OperatorService, OperatorState, TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { decodeJwt } from "jose";
import { bootstrapToken, clientFor, eventually, startMesh, type Started } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { identityQuery, type IdentityMesh } from "./support-identity.js";

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
  const anonymous = () => clientFor(OperatorService, identity.baseUrl, undefined, "grpc", { "x-forwarded-for": `10.77.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}` });
  const asBootstrap = () => clientFor(OperatorService, identity.baseUrl, bootstrapToken);

  /** Creates an operator as the bootstrap credential and signs it in. */
  async function signedInOperator(): Promise<{ id: string; email: string; password: string; token: string }> {
    const email = uniqueOperatorEmail();
    const password = strong();
    const { operator } = await asBootstrap().createOperator({ email, displayName: "Grace Hopper", password });
    const res = await anonymous().signInOperator({ email, password });
    return { id: operator!.id, email, password, token: res.accessToken };
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
    test("the right password returns a one-hour operator token without a tenant, and records the sign-in", async () => {
      const email = uniqueOperatorEmail("signin");
      const password = strong();
      const { operator } = await asBootstrap().createOperator({ email, displayName: "Katherine Johnson", password });
      const before = Math.floor(Date.now() / 1000);
      const res = await anonymous().signInOperator({ email: ` ${email.toUpperCase()} `, password });
      assert.equal(res.operatorId, operator!.id);
      const claims = decodeJwt(res.accessToken);
      assert.equal(claims.sub, operator!.id);
      assert.equal(claims["ten"], undefined);
      assert.equal(claims["kind"], "operator");
      assert.equal(claims["sid"], res.sessionId);
      const exp = Number(res.accessTokenExpireTime?.seconds);
      assert.ok(exp >= before + 3_590 && exp <= before + 3_610, `expires in ${exp - before} s`);
      const [row] = await identityQuery<{ last_sign_in_at: Date | null }>(mesh, "select last_sign_in_at from $schema.operators where id = $1", [operator!.id]);
      assert.ok(row?.last_sign_in_at !== null);
      const events = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where subject = $1", [`${prefix}.identity.operator.signed_in`]);
      assert.ok(events.some((e) => e.envelope.includes(Buffer.from(res.sessionId))));
      assert.ok(!events.some((e) => e.envelope.includes(Buffer.from(password))));
    });

    test("a wrong password, an unknown email and a disabled operator get one and the same UNAUTHENTICATED", async () => {
      const op = await signedInOperator();
      const wrong = await refusedWith(anonymous().signInOperator({ email: op.email, password: `${op.password}x` }), Code.Unauthenticated);
      const unknown = await refusedWith(anonymous().signInOperator({ email: uniqueOperatorEmail("nobody"), password: strong() }), Code.Unauthenticated);
      const other = await signedInOperator();
      await clientFor(OperatorService, identity.baseUrl, other.token).disableOperator({ operatorId: op.id });
      const disabled = await refusedWith(anonymous().signInOperator({ email: op.email, password: op.password }), Code.Unauthenticated);
      assert.equal(wrong.rawMessage, unknown.rawMessage);
      assert.equal(wrong.rawMessage, disabled.rawMessage);
    });

    test("repeated failures lock the operator account: RESOURCE_EXHAUSTED, even with the right password", async () => {
      const op = await signedInOperator();
      const client = anonymous();
      for (let i = 0; i < 5; i++) await refusedWith(client.signInOperator({ email: op.email, password: "Wrong-password-guess-1" }), Code.Unauthenticated);
      await refusedWith(anonymous().signInOperator({ email: op.email, password: op.password }), Code.ResourceExhausted, /retry after/);
    });

    test("an empty email is INVALID_ARGUMENT naming the field", async () => {
      await refusedWith(anonymous().signInOperator({ email: "", password: "x" }), Code.InvalidArgument, "email");
    });
  });

  describe("ListOperators", () => {
    test("an operator token lists operators (never a hash); a tenant user's token is PERMISSION_DENIED; no credential UNAUTHENTICATED", async () => {
      const op = await signedInOperator();
      const { operators } = await clientFor(OperatorService, identity.baseUrl, op.token).listOperators({});
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
      const { accessToken } = await anonymous().signInOperator({ email, password });
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

  describe("the last active operator", () => {
    test("cannot be disabled: FAILED_PRECONDITION", async () => {
      const last = await signedInOperator();
      const ops = clientFor(OperatorService, identity.baseUrl, last.token);
      for (const o of (await ops.listOperators({})).operators) {
        if (o.id !== last.id && o.state === OperatorState.ACTIVE) await ops.disableOperator({ operatorId: o.id });
      }
      await refusedWith(ops.disableOperator({ operatorId: last.id }), Code.FailedPrecondition, /last active operator/);
      const { operators } = await ops.listOperators({});
      assert.deepEqual(operators.filter((o) => o.state === OperatorState.ACTIVE).map((o) => o.id), [last.id]);
    });
  });
});
