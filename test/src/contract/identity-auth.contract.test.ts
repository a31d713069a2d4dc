/**
 * The contract of bulwark.identity.v1.AuthService: sign-in with its single
 * answer for every wrong credential, brute-force locking, token refresh and
 * reuse detection, password change and reset, and the published keys —
 * through the typed client against real tenancy, identity, Postgres and NATS.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createHash } from "node:crypto";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";
import { AuthService, MfaRequirement, type TokenPair } from "@bulwark/contracts";
import { clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { eventsOf, identityQuery, startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { anonymousAuth, claimsOf, createUser, goodPassword, signIn, tenantWithSlug, withToken, type TestTenant } from "./support-auth.js";

let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
});

async function jwks(): Promise<JSONWebKeySet> {
  const { jwksJson } = await clientFor(AuthService, mesh.identity.baseUrl).getJwks({});
  return JSON.parse(jwksJson) as JSONWebKeySet;
}

describe("SignIn", () => {
  test("SignIn returns an EdDSA access token that verifies against GetJwks and names tenant, user, session and permissions", async () => {
    const user = await createUser(mesh, tenant);
    const before = Date.now();
    const tokens = await signIn(mesh, user, "work laptop", anonymousAuth(mesh, "10.1.2.3", { "user-agent": "contract-test/1.0" }));
    const { payload, protectedHeader } = await jwtVerify(tokens.accessToken, createLocalJWKSet(await jwks()), { issuer: "bulwark-identity", algorithms: ["EdDSA"] });
    assert.equal(protectedHeader.alg, "EdDSA");
    assert.equal(protectedHeader.typ, "at+jwt");
    assert.equal(payload.sub, user.id);
    assert.equal(payload["ten"], tenant.id);
    assert.equal(payload["sid"], tokens.sessionId);
    assert.match(tokens.sessionId, /^ses_/);
    assert.deepEqual(payload["roles"], ["system:member"]);
    const perms = payload["perms"] as string[];
    assert.ok(perms.includes("identity.sessions.self") && perms.includes("tenancy.tenants.read"));
    assert.ok(!perms.includes("tenancy.policies.update"));
    assert.equal(tokens.mfaEnrollmentRequired, false);
    const accessLifetime = timestampDate(tokens.accessTokenExpireTime!).getTime() - before;
    assert.ok(accessLifetime > 1_700_000 && accessLifetime <= 1_810_000, `access token lives one idle timeout (30 min by default), got ${accessLifetime} ms`);
    assert.equal(Math.floor(timestampDate(tokens.accessTokenExpireTime!).getTime() / 1000), payload.exp);
    assert.ok(timestampDate(tokens.refreshTokenExpireTime!).getTime() - before > 86_000_000, "the session lasts the refresh-token lifetime (24 h)");
    assert.ok(Buffer.from(tokens.refreshToken, "base64url").length === 32);

    const [session] = await identityQuery<{ user_id: string; device: string; user_agent: string; ip_address: string }>(mesh, "select user_id, device, user_agent, ip_address from $schema.sessions where id = $1", [tokens.sessionId]);
    assert.deepEqual({ ...session }, { user_id: user.id, device: "work laptop", user_agent: "contract-test/1.0", ip_address: "10.1.2.3" });
    const [stored] = await identityQuery<{ hash: string }>(mesh, "select hash from $schema.refresh_tokens where session_id = $1", [tokens.sessionId]);
    assert.equal(stored?.hash, createHash("sha256").update(tokens.refreshToken).digest("hex"), "only the SHA-256 of the refresh token is stored");
    const [u] = await identityQuery<{ last_sign_in_at: Date | null; password_hash: string }>(mesh, "select last_sign_in_at, password_hash from $schema.users where id = $1", [user.id]);
    assert.ok(u?.last_sign_in_at !== null);
    assert.match(u!.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, "a hash with old parameters is replaced on sign-in");
  });

  test("SignIn publishes user.signed_in, with new_device only the first time a device and address are seen", async () => {
    const user = await createUser(mesh, tenant);
    const auth = anonymousAuth(mesh, "10.9.9.9");
    await signIn(mesh, user, "phone", auth);
    await signIn(mesh, user, "phone", auth);
    await signIn(mesh, user, "tablet", auth);
    const { UserSignedInSchema } = await import("@bulwark/contracts");
    const { fromBinary } = await import("@bufbuild/protobuf");
    const events = (await eventsOf(mesh, tenant.id)).filter((e) => e.type === "user.signed_in" && e.aggregateId === user.id).map((e) => fromBinary(UserSignedInSchema, e.payload));
    assert.deepEqual(
      events.map((e) => [e.device, e.newDevice]),
      [
        ["phone", true],
        ["phone", false],
        ["tablet", true],
      ],
    );
  });

  test("a wrong password, an unknown email, an unknown tenant, a suspended, invited or password-less user all get the same UNAUTHENTICATED", async () => {
    const active = await createUser(mesh, tenant);
    const suspended = await createUser(mesh, tenant, { state: "SUSPENDED" });
    const invited = await createUser(mesh, tenant, { state: "INVITED", password: null });
    const auth = anonymousAuth(mesh);
    const attempts = [
      { tenantSlug: tenant.slug, email: active.email, password: "Wrong-password-but-long-enough" },
      { tenantSlug: tenant.slug, email: "nobody.here@example.test", password: active.password },
      { tenantSlug: "no-such-tenant-xyz", email: active.email, password: active.password },
      { tenantSlug: tenant.slug, email: suspended.email, password: suspended.password },
      { tenantSlug: tenant.slug, email: invited.email, password: "anything-at-all-really" },
    ];
    const messages = new Set<string>();
    for (const a of attempts) messages.add((await refusedWith(auth.signIn({ ...a, device: "" }), Code.Unauthenticated)).rawMessage);
    assert.deepEqual([...messages], ["invalid credentials"]);
  });

  test("the email is matched case-insensitively", async () => {
    const user = await createUser(mesh, tenant);
    const res = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email.toUpperCase(), password: user.password, device: "" });
    assert.equal(res.result.case, "tokens");
  });

  test("a suspended tenant's users cannot sign in, with the same answer", async () => {
    const t = await tenantWithSlug(mesh);
    const user = await createUser(mesh, t);
    await mesh.tenancyOps.suspendTenant({ tenantId: t.id, reason: "test" });
    const err = await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: t.slug, email: user.email, password: user.password, device: "" }), Code.Unauthenticated);
    assert.equal(err.rawMessage, "invalid credentials");
  });

  test("SignIn refuses a malformed request with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: "Not_A_Slug", email: "a@b.c", password: "x", device: "" }), Code.InvalidArgument, "tenant_slug");
    await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: "a@b.c", password: "x".repeat(300), device: "" }), Code.InvalidArgument, "password");
  });

  test("10 concurrent wrong guesses check at most 5 passwords; the account then stays locked even for the right password", async () => {
    const user = await createUser(mesh, tenant);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => anonymousAuth(mesh, `10.200.0.${i + 1}`).signIn({ tenantSlug: tenant.slug, email: user.email, password: `Wrong-guess-number-${i}`, device: "" })),
    );
    const codes = results.map((r) => (r.status === "rejected" ? Code[(r.reason as { code: Code }).code] : "OK"));
    const checked = codes.filter((c) => c === "Unauthenticated").length;
    assert.ok(checked >= 1 && checked <= 5, `expected 1..5 checked guesses, got ${codes.join(",")}`);
    assert.equal(codes.filter((c) => c === "ResourceExhausted").length, 10 - checked);
    const err = await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "" }), Code.ResourceExhausted, "retry after");
    assert.doesNotMatch(err.rawMessage, /password|email|user/i);
    const [row] = await identityQuery<{ failures: number; locked_until: Date }>(mesh, "select failures, locked_until from $schema.sign_in_throttles where key = $1", [`acct:${tenant.slug}:${user.email}`]);
    assert.equal(row?.failures, 5, "every replica and attempt agrees on one counter");
    assert.ok(row!.locked_until.getTime() > Date.now());
  });

  test("the lock is per account: another account of the tenant signs in meanwhile, and an unknown email locks the same way", async () => {
    const ghost = { tenantSlug: tenant.slug, email: "ghost.account@example.test", password: "Not-the-password-at-all", device: "" };
    for (let i = 0; i < 5; i++) await refusedWith(anonymousAuth(mesh).signIn(ghost), Code.Unauthenticated);
    await refusedWith(anonymousAuth(mesh).signIn(ghost), Code.ResourceExhausted);
    const other = await createUser(mesh, tenant);
    await signIn(mesh, other);
  });

  test("a success resets the account's failures", async () => {
    const user = await createUser(mesh, tenant);
    for (let i = 0; i < 3; i++) await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: "Wrong-password-again-x", device: "" }), Code.Unauthenticated);
    await signIn(mesh, user);
    const [row] = await identityQuery<{ failures: number; pending: number; locked_until: Date | null }>(mesh, "select failures, pending, locked_until from $schema.sign_in_throttles where key = $1", [`acct:${tenant.slug}:${user.email}`]);
    assert.deepEqual({ ...row }, { failures: 0, pending: 0, locked_until: null });
  });

  test("an Admin without MFA gets tokens limited to enrolling a second factor", async () => {
    const admin = await createUser(mesh, tenant, { roles: ["system:admin"] });
    const tokens = await signIn(mesh, admin);
    assert.equal(tokens.mfaEnrollmentRequired, true);
    assert.deepEqual(claimsOf(tokens.accessToken).perms.sort(), ["identity.mfa.self", "identity.passkeys.self", "identity.sessions.self"]);
  });

  test("with MFA required for everyone, a member without MFA is limited too", async () => {
    const t = await tenantWithSlug(mesh);
    await mesh.tenancyOps.updateSecurityPolicy({ tenantId: t.id, policy: { mfaRequirement: MfaRequirement.EVERYONE }, updateMask: { paths: ["mfa_requirement"] } });
    const user = await createUser(mesh, t);
    const tokens = await signIn(mesh, user);
    assert.equal(tokens.mfaEnrollmentRequired, true);
  });

  test("a user with MFA gets a 5-minute challenge instead of tokens, stored only as a hash", async () => {
    const user = await createUser(mesh, tenant, { mfaEnrolled: true });
    const res = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "" });
    assert.equal(res.result.case, "mfaChallenge");
    const challenge = res.result.value!;
    assert.ok("challengeToken" in challenge);
    const ttl = timestampDate(challenge.expireTime!).getTime() - Date.now();
    assert.ok(ttl > 280_000 && ttl <= 300_000);
    const rows = await identityQuery<{ hash: string }>(mesh, "select hash from $schema.mfa_challenges where user_id = $1", [user.id]);
    assert.deepEqual(rows.map((r) => r.hash), [createHash("sha256").update(challenge.challengeToken).digest("hex")]);
    assert.equal((await identityQuery(mesh, "select 1 from $schema.sessions where user_id = $1", [user.id])).length, 0, "no session before the second factor");
  });

  test("sign-in takes about as long for an unknown email as for a wrong password (no enumeration by timing)", async () => {
    const user = await createUser(mesh, tenant);
    await signIn(mesh, user); // store a hash with current parameters
    const time = async (email: string, i: number): Promise<number> => {
      const started = performance.now();
      await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email, password: `Wrong-password-${i}-xyz`, device: "" }), Code.Unauthenticated);
      return performance.now() - started;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 8; i++) {
      // At most 4 failures per account, under the lock threshold.
      known.push(await time(i % 2 === 0 ? user.email : (await createUserCached(i)).email, i));
      unknown.push(await time(`unknown.${i}@example.test`, i));
    }
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const ratio = mean(known) / mean(unknown);
    assert.ok(ratio > 0.5 && ratio < 2, `known ${mean(known).toFixed(1)} ms vs unknown ${mean(unknown).toFixed(1)} ms`);
  });
});

const spare = new Map<number, Awaited<ReturnType<typeof createUser>>>();
async function createUserCached(i: number) {
  let u = spare.get(i);
  if (u === undefined) {
    u = await createUser(mesh, tenant);
    await signIn(mesh, u);
    spare.set(i, u);
  }
  return u;
}

describe("RefreshTokens", () => {
  test("RefreshTokens returns a new pair for the same session; the presented token is used up", async () => {
    const user = await createUser(mesh, tenant);
    const first = await signIn(mesh, user);
    const { tokens: second } = await anonymousAuth(mesh).refreshTokens({ refreshToken: first.refreshToken });
    assert.ok(second !== undefined);
    assert.equal(second.sessionId, first.sessionId);
    assert.notEqual(second.refreshToken, first.refreshToken);
    assert.equal(claimsOf(second.accessToken).sid, first.sessionId);
    const { tokens: third } = await anonymousAuth(mesh).refreshTokens({ refreshToken: second.refreshToken });
    assert.equal(third?.sessionId, first.sessionId);
  });

  test("presenting a used refresh token revokes the whole session", async () => {
    const user = await createUser(mesh, tenant);
    const first = await signIn(mesh, user);
    const { tokens: second } = await anonymousAuth(mesh).refreshTokens({ refreshToken: first.refreshToken });
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: first.refreshToken }), Code.Unauthenticated);
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: second!.refreshToken }), Code.Unauthenticated);
    const [s] = await identityQuery<{ revoke_reason: string }>(mesh, "select revoke_reason from $schema.sessions where id = $1", [first.sessionId]);
    assert.equal(s?.revoke_reason, "refresh_token_reused");
    await refusedWith(withToken(mesh, second!.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
    assert.ok((await eventsOf(mesh, tenant.id)).some((e) => e.type === "session.revoked" && e.aggregateId === first.sessionId));
  });

  test("of concurrent refreshes with one token at most one succeeds", async () => {
    const user = await createUser(mesh, tenant);
    const first = await signIn(mesh, user);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => anonymousAuth(mesh).refreshTokens({ refreshToken: first.refreshToken })));
    assert.ok(results.filter((r) => r.status === "fulfilled").length <= 1);
  });

  test("an unknown refresh token, or one past the idle timeout, is UNAUTHENTICATED", async () => {
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: "bm90LWEtcmVhbC10b2tlbg" }), Code.Unauthenticated);
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    await identityQuery(mesh, "update $schema.sessions set last_seen_at = now() - interval '31 minutes' where id = $1", [tokens.sessionId]);
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: tokens.refreshToken }), Code.Unauthenticated);
    const other = await signIn(mesh, user);
    await identityQuery(mesh, "update $schema.sessions set expires_at = now() - interval '1 second' where id = $1", [other.sessionId]);
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: other.refreshToken }), Code.Unauthenticated);
  });
});

describe("SignOut", () => {
  test("SignOut ends the caller's session: its refresh token and access token stop working", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    await withToken(mesh, tokens.accessToken).auth.signOut({});
    await refusedWith(withToken(mesh, tokens.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: tokens.refreshToken }), Code.Unauthenticated);
  });

  test("SignOut without a credential is UNAUTHENTICATED", async () => {
    await refusedWith(anonymousAuth(mesh).signOut({}), Code.Unauthenticated);
  });
});

describe("ChangePassword", () => {
  test("ChangePassword needs the current password, judges the new one, and revokes every other session", async () => {
    const user = await createUser(mesh, tenant);
    const here = await signIn(mesh, user, "here");
    const elsewhere = await signIn(mesh, user, "elsewhere");
    const auth = withToken(mesh, here.accessToken).auth;
    await refusedWith(auth.changePassword({ currentPassword: "Not-my-password-at-all", newPassword: goodPassword() }), Code.Unauthenticated);
    await refusedWith(auth.changePassword({ currentPassword: user.password, newPassword: "short" }), Code.InvalidArgument, "new_password");
    await refusedWith(auth.changePassword({ currentPassword: user.password, newPassword: "password1234567" }), Code.InvalidArgument, "new_password");
    await refusedWith(auth.changePassword({ currentPassword: user.password, newPassword: `${user.email}-2024` }), Code.InvalidArgument, "new_password");
    await refusedWith(auth.changePassword({ currentPassword: user.password, newPassword: user.password }), Code.InvalidArgument, "last 5");
    const next = goodPassword();
    const { revokedSessions } = await auth.changePassword({ currentPassword: user.password, newPassword: next });
    assert.equal(revokedSessions, 1);
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: elsewhere.refreshToken }), Code.Unauthenticated);
    await refusedWith(withToken(mesh, elsewhere.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
    assert.equal((await withToken(mesh, here.accessToken).sessions.listMySessions({})).sessions.length, 1, "the current session lives on");
    await refusedWith(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "" }), Code.Unauthenticated);
    user.password = next;
    await signIn(mesh, user);
    assert.ok((await eventsOf(mesh, tenant.id)).some((e) => e.type === "user.password_changed" && e.aggregateId === user.id));
  });

  test("none of the last five passwords may come back", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const auth = withToken(mesh, tokens.accessToken).auth;
    const original = user.password;
    for (let i = 0; i < 4; i++) {
      const next = goodPassword();
      await auth.changePassword({ currentPassword: user.password, newPassword: next });
      user.password = next;
    }
    await refusedWith(auth.changePassword({ currentPassword: user.password, newPassword: original }), Code.InvalidArgument, "last 5");
  });
});

describe("RequestPasswordReset and ResetPassword", () => {
  test("RequestPasswordReset answers the same for a known and an unknown email, and stores only a hash for the known one", async () => {
    const user = await createUser(mesh, tenant);
    const known = await anonymousAuth(mesh).requestPasswordReset({ tenantSlug: tenant.slug, email: user.email });
    const unknown = await anonymousAuth(mesh).requestPasswordReset({ tenantSlug: tenant.slug, email: "nobody.at.all@example.test" });
    const noTenant = await anonymousAuth(mesh).requestPasswordReset({ tenantSlug: "no-such-tenant-abc", email: user.email });
    assert.deepEqual(known, unknown);
    assert.deepEqual(known, noTenant);
    const rows = await identityQuery<{ hash: string; ttl: number }>(mesh, "select hash, extract(epoch from expires_at - created_at)::int as ttl from $schema.password_reset_tokens where user_id = $1", [user.id]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.ttl, 1800);
    assert.match(rows[0]!.hash, /^[0-9a-f]{64}$/);
    assert.ok((await eventsOf(mesh, tenant.id)).some((e) => e.type === "user.password_reset_requested" && e.aggregateId === user.id));
  });

  test("RequestPasswordReset takes about as long whether or not the account exists", async () => {
    const user = await createUser(mesh, tenant);
    const time = async (email: string): Promise<number> => {
      const t = performance.now();
      await anonymousAuth(mesh).requestPasswordReset({ tenantSlug: tenant.slug, email });
      return performance.now() - t;
    };
    let known = 0;
    let unknown = 0;
    for (let i = 0; i < 4; i++) {
      known += await time(user.email);
      unknown += await time(`missing.${i}@example.test`);
    }
    assert.ok(known / unknown < 2 && unknown / known < 2, `known ${known} ms vs unknown ${unknown} ms`);
  });

  test("ResetPassword with a valid token sets the password, ends every session, and works once", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const resetToken = Buffer.from(`reset-${Date.now()}-${Math.random()}`).toString("base64url");
    await identityQuery(mesh, "insert into $schema.password_reset_tokens (hash, tenant_id, user_id, created_at, expires_at) values ($1, $2, $3, now(), now() + interval '30 minutes')", [
      createHash("sha256").update(resetToken).digest("hex"),
      tenant.id,
      user.id,
    ]);
    await refusedWith(anonymousAuth(mesh).resetPassword({ resetToken, newPassword: "tooshort" }), Code.InvalidArgument, "new_password");
    const next = goodPassword();
    await anonymousAuth(mesh).resetPassword({ resetToken, newPassword: next });
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: tokens.refreshToken }), Code.Unauthenticated);
    await refusedWith(withToken(mesh, tokens.accessToken).sessions.listMySessions({}), Code.Unauthenticated);
    await refusedWith(anonymousAuth(mesh).resetPassword({ resetToken, newPassword: goodPassword() }), Code.FailedPrecondition);
    user.password = next;
    await signIn(mesh, user);
  });

  test("an unknown or expired reset token gets one FAILED_PRECONDITION", async () => {
    const user = await createUser(mesh, tenant);
    const expired = "expired-reset-token-value";
    await identityQuery(mesh, "insert into $schema.password_reset_tokens (hash, tenant_id, user_id, created_at, expires_at) values ($1, $2, $3, now() - interval '1 hour', now() - interval '30 minutes')", [
      createHash("sha256").update(expired).digest("hex"),
      tenant.id,
      user.id,
    ]);
    const a = await refusedWith(anonymousAuth(mesh).resetPassword({ resetToken: expired, newPassword: goodPassword() }), Code.FailedPrecondition);
    const b = await refusedWith(anonymousAuth(mesh).resetPassword({ resetToken: "never-issued-token", newPassword: goodPassword() }), Code.FailedPrecondition);
    assert.equal(a.rawMessage, b.rawMessage);
  });
});

describe("GetJwks", () => {
  test("GetJwks publishes Ed25519 public keys only, including the one that signs current tokens", async () => {
    const user = await createUser(mesh, tenant);
    const tokens: TokenPair = await signIn(mesh, user);
    const set = await jwks();
    assert.ok(set.keys.length >= 1);
    for (const k of set.keys) {
      assert.equal(k.kty, "OKP");
      assert.equal(k.crv, "Ed25519");
      assert.equal(k.alg, "EdDSA");
      assert.equal(k.d, undefined, "no private part is published");
    }
    assert.ok(set.keys.some((k) => k.kid === claimsOf(tokens.accessToken).kid));
  });
});
