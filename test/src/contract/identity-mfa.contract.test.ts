/**
 * The contract of bulwark.identity.v1.MfaService: TOTP enrolment and
 * confirmation, recovery codes, the second step of a sign-in with replay
 * protection across concurrent calls, throttled wrong codes, disabling with a
 * fresh proof, and an administrator's reset — through the typed client
 * against real tenancy, identity, Postgres and NATS.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { AuthService, MfaService, type TokenPair } from "@bulwark/contracts";
import { systemRole } from "@bulwark/core";
import { bootstrapToken, clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { eventTypesFor, identityQuery, startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { anonymousAuth, claimsOf, createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";

let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
});

// RFC 6238 (SHA-1, 6 digits, 30 s) written out here, so the tests check the
// service against the standard rather than against the library it uses.
function base32Decode(s: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of s.replace(/=+$/, "")) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totpAt(secret: string, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  return ((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).toString().padStart(6, "0");
}

const currentStep = (): number => Math.floor(Date.now() / 30_000);
/** The code of the current step plus `delta` (the service accepts -1, 0 and +1). */
const code = (secret: string, delta = 0): string => totpAt(secret, currentStep() + delta);
/** A code that is none of the three the service accepts now. */
function wrongCode(secret: string): string {
  const valid = new Set([-1, 0, 1].map((d) => code(secret, d)));
  for (let n = 0; ; n++) {
    const c = String(n).padStart(6, "0");
    if (!valid.has(c)) return c;
  }
}

/** Waits until at least 5 s remain in the current time step, so a test's codes stay in one window. */
async function roomInStep(): Promise<void> {
  const left = 30_000 - (Date.now() % 30_000);
  if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
}

const mfa = (token?: string) => clientFor(MfaService, mesh.identity.baseUrl, token);
const publicMfa = () => clientFor(MfaService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.9.8.7" });

interface Enrolled {
  readonly user: TestUser;
  readonly secret: string;
  readonly recoveryCodes: string[];
  readonly tokens: TokenPair;
}

/** A user with confirmed TOTP; the confirmation spent the code of the previous step. */
async function enrolledUser(roles?: string[]): Promise<Enrolled> {
  await roomInStep();
  const user = await createUser(mesh, tenant, roles === undefined ? {} : { roles });
  const tokens = await signIn(mesh, user);
  const client = mfa(tokens.accessToken);
  const { secret } = await client.enrollTotp({});
  const { recoveryCodes } = await client.confirmTotp({ code: code(secret, -1) });
  return { user, secret, recoveryCodes, tokens };
}

/** Signs in with the password and returns the challenge token. */
async function challengeFor(user: TestUser): Promise<string> {
  const res = await anonymousAuth(mesh).signIn({ tenantSlug: user.tenant.slug, email: user.email, password: user.password, device: "phone" });
  assert.equal(res.result.case, "mfaChallenge", `expected an MFA challenge, got ${res.result.case}`);
  return res.result.value.challengeToken;
}

describe("EnrollTotp", () => {
  test("EnrollTotp returns a base32 secret and an otpauth URI naming Bulwark and the user's email, and stores the secret encrypted", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const { secret, otpauthUri } = await mfa(tokens.accessToken).enrollTotp({});
    assert.match(secret, /^[A-Z2-7]{32}$/);
    const uri = new URL(otpauthUri);
    assert.ok(otpauthUri.startsWith(`otpauth://totp/Bulwark:${encodeURIComponent(user.email)}?`), otpauthUri);
    assert.equal(uri.searchParams.get("secret"), secret);
    assert.equal(uri.searchParams.get("issuer"), "Bulwark");
    assert.equal(uri.searchParams.get("algorithm"), "SHA1");
    assert.equal(uri.searchParams.get("digits"), "6");
    assert.equal(uri.searchParams.get("period"), "30");

    const [row] = await identityQuery<{ secret_ciphertext: Buffer; confirmed_at: Date | null; tenant_id: string }>(mesh, "select secret_ciphertext, confirmed_at, tenant_id from $schema.totp_credentials where user_id = $1", [user.id]);
    assert.ok(row !== undefined);
    assert.equal(row.confirmed_at, null);
    assert.equal(row.tenant_id, tenant.id);
    assert.equal(row.secret_ciphertext[0], 2, "the ciphertext starts with its layout: 2, encrypted through the keys service");
    assert.equal(row.secret_ciphertext.includes(Buffer.from(secret)), false, "no base32 secret at rest");
    assert.equal(row.secret_ciphertext.includes(base32Decode(secret)), false, "no raw secret at rest");
    const status = await mfa(tokens.accessToken).getMfaStatus({});
    assert.deepEqual([status.totpConfirmed, status.totpPending, status.recoveryCodesRemaining], [false, true, 0]);
  });

  test("enrolling again before confirming replaces the pending secret", async () => {
    const user = await createUser(mesh, tenant);
    const client = mfa((await signIn(mesh, user)).accessToken);
    const first = await client.enrollTotp({});
    const second = await client.enrollTotp({});
    assert.notEqual(first.secret, second.secret);
    await roomInStep();
    await refusedWith(client.confirmTotp({ code: wrongCode(second.secret) === code(first.secret) ? wrongCode(second.secret) : code(first.secret) }), Code.InvalidArgument, "code");
    assert.equal((await client.confirmTotp({ code: code(second.secret) })).recoveryCodes.length, 10);
  });

  test("EnrollTotp is refused with FAILED_PRECONDITION once TOTP is confirmed, UNAUTHENTICATED without a credential and PERMISSION_DENIED without identity.mfa.self", async () => {
    const { tokens } = await enrolledUser();
    await refusedWith(mfa(tokens.accessToken).enrollTotp({}), Code.FailedPrecondition, "already enabled");
    await refusedWith(mfa().enrollTotp({}), Code.Unauthenticated);
    const noPerms = mesh.identity.issueToken({ id: "usr_nobody", kind: "user", tenantId: tenant.id, permissions: new Set(["identity.sessions.self"]) });
    await refusedWith(mfa(noPerms).enrollTotp({}), Code.PermissionDenied);
  });
});

describe("ConfirmTotp", () => {
  test("ConfirmTotp with the first code enables TOTP, marks the user enrolled and returns 10 recovery codes stored only as hashes", async () => {
    await roomInStep();
    const user = await createUser(mesh, tenant);
    const client = mfa((await signIn(mesh, user)).accessToken);
    const { secret } = await client.enrollTotp({});
    const { recoveryCodes } = await client.confirmTotp({ code: code(secret) });
    assert.equal(recoveryCodes.length, 10);
    assert.equal(new Set(recoveryCodes).size, 10);
    for (const c of recoveryCodes) assert.match(c, /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/);
    const [u] = await identityQuery<{ mfa_enrolled: boolean }>(mesh, "select mfa_enrolled from $schema.users where id = $1", [user.id]);
    assert.equal(u?.mfa_enrolled, true);
    const stored = await identityQuery<{ code_hash: string }>(mesh, "select code_hash from $schema.recovery_codes where user_id = $1", [user.id]);
    assert.equal(stored.length, 10);
    for (const r of stored) {
      assert.match(r.code_hash, /^[0-9a-f]{64}$/);
      assert.ok(!recoveryCodes.some((c) => r.code_hash.includes(c) || r.code_hash.includes(c.replace("-", ""))));
    }
    const status = await client.getMfaStatus({});
    assert.equal(status.totpConfirmed, true);
    assert.equal(status.totpPending, false);
    assert.equal(status.recoveryCodesRemaining, 10);
    const types = await eventTypesFor(mesh, tenant.id, user.id);
    assert.ok(types.includes("user.mfa_enabled") && types.includes("user.recovery_codes_viewed"), types.join(", "));
  });

  test("ConfirmTotp refuses a wrong code and a malformed one with INVALID_ARGUMENT naming code, and FAILED_PRECONDITION without a pending enrolment or once confirmed", async () => {
    const user = await createUser(mesh, tenant);
    const client = mfa((await signIn(mesh, user)).accessToken);
    await refusedWith(client.confirmTotp({ code: "123456" }), Code.FailedPrecondition, "EnrollTotp");
    const { secret } = await client.enrollTotp({});
    await refusedWith(client.confirmTotp({ code: wrongCode(secret) }), Code.InvalidArgument, "code");
    await refusedWith(client.confirmTotp({ code: "12ab56" }), Code.InvalidArgument, "code");
    await refusedWith(client.confirmTotp({ code: "" }), Code.InvalidArgument, "code");
    assert.equal((await client.getMfaStatus({})).totpConfirmed, false);
    await roomInStep();
    await client.confirmTotp({ code: code(secret) });
    await refusedWith(client.confirmTotp({ code: code(secret, 1) }), Code.FailedPrecondition, "already enabled");
  });
});

describe("VerifyMfaChallenge", () => {
  test("after enrolling, sign-in returns a challenge and a TOTP code turns it into tokens for the challenge's device", async () => {
    const { user, secret } = await enrolledUser();
    const challenge = await challengeFor(user);
    const { tokens } = await publicMfa().verifyMfaChallenge({ challengeToken: challenge, factor: { case: "totpCode", value: code(secret) } });
    assert.ok(tokens !== undefined);
    assert.equal(tokens.mfaEnrollmentRequired, false);
    assert.equal(claimsOf(tokens.accessToken).sub, user.id);
    const [session] = await identityQuery<{ device: string; user_id: string }>(mesh, "select device, user_id from $schema.sessions where id = $1", [tokens.sessionId]);
    assert.deepEqual({ ...session }, { device: "phone", user_id: user.id });
    const [row] = await identityQuery<{ used_at: Date | null }>(mesh, "select used_at from $schema.mfa_challenges where user_id = $1", [user.id]);
    assert.ok(row?.used_at !== null);
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: challenge, factor: { case: "totpCode", value: code(secret, 1) } }), Code.Unauthenticated, "invalid or expired challenge");
  });

  test("a TOTP code that was accepted once is refused on a new challenge (replay), and an older step after a newer one too", async () => {
    const { user, secret } = await enrolledUser();
    const used = code(secret);
    await publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: used } });
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: used } }), Code.Unauthenticated, "the code is not valid");
    // The confirmation spent the previous step; it cannot be used now either.
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: code(secret, -1) } }), Code.Unauthenticated, "the code is not valid");
    const { tokens } = await publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: code(secret, 1) } });
    assert.ok(tokens !== undefined);
  });

  test("two concurrent verifications with one code on two challenges: exactly one succeeds", async () => {
    const { user, secret } = await enrolledUser();
    const [a, b, c] = await Promise.all([challengeFor(user), challengeFor(user), challengeFor(user)]);
    const c0 = code(secret);
    const results = await Promise.allSettled([a, b, c].map((challengeToken) => publicMfa().verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: c0 } })));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, JSON.stringify(results.map((r) => r.status)));
    for (const r of results) if (r.status === "rejected") await refusedWith(Promise.reject(r.reason as Error), Code.Unauthenticated, "the code is not valid");
  });

  test("a recovery code works once, in any case and without its dash, and its use is published", async () => {
    const { user, recoveryCodes, tokens } = await enrolledUser();
    const rc = recoveryCodes[3]!;
    const res = await publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "recoveryCode", value: rc.toLowerCase().replace("-", "") } });
    assert.ok(res.tokens !== undefined);
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "recoveryCode", value: rc } }), Code.Unauthenticated, "the code is not valid");
    assert.equal((await mfa(tokens.accessToken).getMfaStatus({})).recoveryCodesRemaining, 9);
    assert.ok((await eventTypesFor(mesh, tenant.id, user.id)).includes("user.recovery_code_used"));
  });

  test("five wrong codes end the challenge: the right code is then refused as an invalid challenge", async () => {
    const { user, secret } = await enrolledUser();
    const challengeToken = await challengeFor(user);
    for (let i = 0; i < 5; i++) {
      await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: wrongCode(secret) } }), Code.Unauthenticated, "the code is not valid");
    }
    // The user's code counter locked too (see the brute-force tests); clear it to see the challenge itself is dead.
    await identityQuery(mesh, "delete from $schema.sign_in_throttles where key = $1", [`mfa:${user.id}`]);
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: code(secret) } }), Code.Unauthenticated, "invalid or expired challenge");
    // The code was not spent by the dead challenge: a new challenge takes it.
    const { tokens } = await publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: code(secret) } });
    assert.ok(tokens !== undefined);
  });

  test("an unknown or expired challenge gets UNAUTHENTICATED, a missing or malformed factor INVALID_ARGUMENT", async () => {
    const { user, secret } = await enrolledUser();
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: "no-such-challenge", factor: { case: "totpCode", value: code(secret) } }), Code.Unauthenticated, "invalid or expired challenge");
    const challengeToken = await challengeFor(user);
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken }), Code.InvalidArgument, "factor");
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: "12345" } }), Code.InvalidArgument, "totp_code");
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: "", factor: { case: "totpCode", value: code(secret) } }), Code.InvalidArgument, "challenge_token");
    await identityQuery(mesh, "update $schema.mfa_challenges set expires_at = now() - interval '1 second' where user_id = $1", [user.id]);
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken, factor: { case: "totpCode", value: code(secret) } }), Code.Unauthenticated, "invalid or expired challenge");
  });

  test("an admin (a role that requires MFA) gets enrolment-only tokens, enrols with them, and then signs in through a challenge with full permissions", async () => {
    await roomInStep();
    const user = await createUser(mesh, tenant, { roles: ["system:admin"] });
    const first = await signIn(mesh, user);
    assert.equal(first.mfaEnrollmentRequired, true);
    assert.deepEqual(claimsOf(first.accessToken).perms.sort(), ["identity.mfa.self", "identity.passkeys.self", "identity.sessions.self"]);
    const client = mfa(first.accessToken);
    const { secret } = await client.enrollTotp({});
    await refusedWith(client.regenerateRecoveryCodes({ totpCode: code(secret) }), Code.PermissionDenied);
    await client.confirmTotp({ code: code(secret, -1) });
    const { tokens } = await publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "totpCode", value: code(secret) } });
    assert.ok(tokens !== undefined);
    assert.equal(tokens.mfaEnrollmentRequired, false);
    const perms = claimsOf(tokens.accessToken).perms;
    assert.ok(perms.includes("identity.mfa.reset") && perms.includes("identity.users.read"), perms.join(", "));
  });
});

describe("DisableTotp", () => {
  test("DisableTotp needs a fresh code: none, a wrong one or an already used one is refused; a current one removes TOTP and recovery codes", async () => {
    const { user, secret, tokens } = await enrolledUser();
    const client = mfa(tokens.accessToken);
    await refusedWith(client.disableTotp({}), Code.InvalidArgument, "proof");
    await refusedWith(client.disableTotp({ proof: { case: "totpCode", value: wrongCode(secret) } }), Code.Unauthenticated, "the code is not valid");
    await refusedWith(client.disableTotp({ proof: { case: "totpCode", value: code(secret, -1) } }), Code.Unauthenticated, "the code is not valid");
    await refusedWith(client.disableTotp({ proof: { case: "recoveryCode", value: "AAAAA-AAAAA" } }), Code.Unauthenticated, "the code is not valid");
    assert.equal((await client.getMfaStatus({})).totpConfirmed, true);
    await client.disableTotp({ proof: { case: "totpCode", value: code(secret) } });
    assert.deepEqual([(await client.getMfaStatus({})).totpConfirmed, (await client.getMfaStatus({})).recoveryCodesRemaining], [false, 0]);
    const [u] = await identityQuery<{ mfa_enrolled: boolean }>(mesh, "select mfa_enrolled from $schema.users where id = $1", [user.id]);
    assert.equal(u?.mfa_enrolled, false);
    assert.equal((await identityQuery(mesh, "select 1 from $schema.totp_credentials where user_id = $1", [user.id])).length, 0);
    assert.equal((await identityQuery(mesh, "select 1 from $schema.recovery_codes where user_id = $1", [user.id])).length, 0);
    await signIn(mesh, user);
    assert.ok((await eventTypesFor(mesh, tenant.id, user.id)).includes("user.mfa_disabled"));
    await refusedWith(client.disableTotp({ proof: { case: "totpCode", value: code(secret, 1) } }), Code.FailedPrecondition, "not enabled");
  });

  test("DisableTotp accepts an unused recovery code as the proof", async () => {
    const { recoveryCodes, tokens } = await enrolledUser();
    const client = mfa(tokens.accessToken);
    await client.disableTotp({ proof: { case: "recoveryCode", value: recoveryCodes[0]! } });
    assert.equal((await client.getMfaStatus({})).totpConfirmed, false);
  });
});

describe("RegenerateRecoveryCodes", () => {
  test("RegenerateRecoveryCodes with a current code replaces every code: old ones stop working, new ones work, and the view is published", async () => {
    const { user, secret, recoveryCodes, tokens } = await enrolledUser();
    const client = mfa(tokens.accessToken);
    await refusedWith(client.regenerateRecoveryCodes({ totpCode: wrongCode(secret) }), Code.Unauthenticated, "the code is not valid");
    await refusedWith(client.regenerateRecoveryCodes({ totpCode: "abc" }), Code.InvalidArgument, "totp_code");
    const { recoveryCodes: fresh } = await client.regenerateRecoveryCodes({ totpCode: code(secret) });
    assert.equal(fresh.length, 10);
    assert.equal(fresh.filter((c) => recoveryCodes.includes(c)).length, 0);
    assert.equal((await client.getMfaStatus({})).recoveryCodesRemaining, 10);
    await refusedWith(publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "recoveryCode", value: recoveryCodes[0]! } }), Code.Unauthenticated);
    await publicMfa().verifyMfaChallenge({ challengeToken: await challengeFor(user), factor: { case: "recoveryCode", value: fresh[0]! } });
    assert.equal((await eventTypesFor(mesh, tenant.id, user.id)).filter((t) => t === "user.recovery_codes_viewed").length, 2);
  });

  test("RegenerateRecoveryCodes is FAILED_PRECONDITION without TOTP and PERMISSION_DENIED without identity.recovery_codes.self", async () => {
    const user = await createUser(mesh, tenant);
    await refusedWith(mfa((await signIn(mesh, user)).accessToken).regenerateRecoveryCodes({ totpCode: "123456" }), Code.FailedPrecondition, "not enabled");
    const noPerms = mesh.identity.issueToken({ id: user.id, kind: "user", tenantId: tenant.id, permissions: new Set(["identity.mfa.self"]) });
    await refusedWith(mfa(noPerms).regenerateRecoveryCodes({ totpCode: "123456" }), Code.PermissionDenied);
  });
});

describe("GetMfaStatus", () => {
  test("GetMfaStatus of a user without factors says so; without a credential it is UNAUTHENTICATED", async () => {
    const user = await createUser(mesh, tenant);
    const status = await mfa((await signIn(mesh, user)).accessToken).getMfaStatus({});
    assert.deepEqual([status.totpConfirmed, status.totpPending, status.recoveryCodesRemaining], [false, false, 0]);
    await refusedWith(mfa().getMfaStatus({}), Code.Unauthenticated);
  });
});

describe("ResetUserMfa", () => {
  test("an administrator resets a user's factors: TOTP and codes are gone, the user signs in with a password alone, and the reset is published", async () => {
    const { user, tokens } = await enrolledUser();
    const admin = mfa(mesh.identity.issueToken({ id: "usr_admin", kind: "user", tenantId: tenant.id, permissions: new Set(["identity.mfa.reset", ...systemRole("system:member")!.permissions]) }));
    await admin.resetUserMfa({ userId: user.id });
    // The tokens issued while the factor existed are outdated at once (user.grants_reduced); a refresh gives new ones.
    await refusedWith(mfa(tokens.accessToken).getMfaStatus({}), Code.Unauthenticated, "permissions");
    const { tokens: refreshed } = await clientFor(AuthService, mesh.identity.baseUrl).refreshTokens({ refreshToken: tokens.refreshToken });
    const status = await mfa(refreshed!.accessToken).getMfaStatus({});
    assert.deepEqual([status.totpConfirmed, status.recoveryCodesRemaining], [false, 0]);
    await signIn(mesh, user);
    assert.ok((await eventTypesFor(mesh, tenant.id, user.id)).includes("user.mfa_reset"));
    const [session] = await identityQuery<{ revoked_at: Date | null }>(mesh, "select revoked_at from $schema.sessions where id = $1", [tokens.sessionId]);
    assert.equal(session?.revoked_at, null, "sessions are left alone");
  });

  test("an admin cannot reset an owner's second factor", async () => {
    const owner = await createUser(mesh, tenant, { roles: ["system:owner"], mfaEnrolled: true });
    await identityQuery(mesh, "insert into $schema.totp_credentials (user_id, tenant_id, secret_ciphertext, confirmed_at, last_used_step, created_at) values ($1, $2, $3, now(), 0, now())", [owner.id, tenant.id, Buffer.from("sealed")]);
    const admin = mfa(mesh.identity.issueToken({ id: "usr_admin", kind: "user", tenantId: tenant.id, permissions: new Set(systemRole("system:admin")!.permissions) }));
    await refusedWith(admin.resetUserMfa({ userId: owner.id }), Code.PermissionDenied, "identity.roles.assign_owner, which the caller lacks");
    const rows = await identityQuery<{ mfa_enrolled: boolean; totp: number }>(mesh, "select mfa_enrolled, (select count(*)::int from $schema.totp_credentials where user_id = $1) as totp from $schema.users where id = $1", [owner.id]);
    assert.deepEqual(rows[0], { mfa_enrolled: true, totp: 1 });
    assert.ok(!(await eventTypesFor(mesh, tenant.id, owner.id)).includes("user.mfa_reset"));
  });

  test("ResetUserMfa: NOT_FOUND for an unknown user or one of another tenant, INVALID_ARGUMENT for a malformed id, PERMISSION_DENIED without identity.mfa.reset", async () => {
    const other = await tenantWithSlug(mesh);
    const stranger = await createUser(mesh, other);
    const admin = mfa(mesh.identity.issueToken({ id: "usr_admin", kind: "user", tenantId: tenant.id, permissions: new Set(["identity.mfa.reset", ...systemRole("system:member")!.permissions]) }));
    await refusedWith(admin.resetUserMfa({ userId: "usr_nosuchuser" }), Code.NotFound, "user");
    await refusedWith(admin.resetUserMfa({ userId: stranger.id }), Code.NotFound, "user");
    await refusedWith(admin.resetUserMfa({ userId: "nope" }), Code.InvalidArgument, "user_id");
    const member = mfa((await signIn(mesh, await createUser(mesh, tenant))).accessToken);
    await refusedWith(member.resetUserMfa({ userId: stranger.id }), Code.PermissionDenied);
  });

  test("the bootstrap operator can reset a user's factors inside a tenant named by the bulwark-tenant header", async () => {
    const { user } = await enrolledUser();
    await clientFor(MfaService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenant.id }).resetUserMfa({ userId: user.id });
    await signIn(mesh, user);
  });
});
