/**
 * The contract of bulwark.identity.v1.PasskeyService: real WebAuthn
 * ceremonies, driven by a software authenticator against real tenancy,
 * identity, Postgres and NATS — registering, listing, renaming and removing
 * passkeys; signing in with a passkey alone or as the second factor of a
 * password; and the refusals: cloned authenticators, other users' and
 * other tenants' passkeys, wrong origins and replayed challenges.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";
import { AuthService, MfaService, PasskeyCloneSuspectedSchema, PasskeyService, SessionService, TenancyService, UserPasskeyAddedSchema, type TokenPair } from "@bulwark/contracts";
import { AccessTokenVerifier, CachedJwksSource, RevokedSessions } from "@bulwark/core";
import { identityModule, maxChallengeAttempts } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, startTestService } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { anonymousAuth, claimsOf, createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";
import { eventsOf, identityQuery, type IdentityMesh } from "./support-identity.js";
import { SoftwareAuthenticator } from "./support-webauthn.js";

let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  // Tenancy verifies identity's access tokens with its published keys, so a passkey's tokens can be tried there.
  let identityUrl = "";
  const source = new CachedJwksSource(async () => JSON.parse((await createClient(AuthService, createGrpcTransport({ baseUrl: identityUrl })).getJwks({})).jwksJson), { minRefreshIntervalMs: 0 });
  const tenancy = await startTestService({ ...tenancyModule, resolvers: () => [new AccessTokenVerifier({ source, revoked: new RevokedSessions() })] });
  const identity = await startTestService(identityModule, { env: { TENANCY_URL: tenancy.baseUrl } });
  identityUrl = identity.baseUrl;
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
});

function passkeysOf(accessToken: string): Client<typeof PasskeyService> {
  return clientFor(PasskeyService, mesh.identity.baseUrl, accessToken);
}

function anonymousPasskeys(ip = "10.20.30.40"): Client<typeof PasskeyService> {
  return clientFor(PasskeyService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": ip });
}

/** A user signed in with a password (before any passkey, so no MFA challenge yet). */
async function userWithToken(t: TestTenant = tenant): Promise<{ user: TestUser; tokens: TokenPair; passkeys: Client<typeof PasskeyService> }> {
  const user = await createUser(mesh, t);
  const tokens = await signIn(mesh, user);
  return { user, tokens, passkeys: passkeysOf(tokens.accessToken) };
}

/** Registers a passkey of the authenticator through a full ceremony. */
async function register(passkeys: Client<typeof PasskeyService>, authenticator: SoftwareAuthenticator, name = "Work laptop") {
  const { optionsJson } = await passkeys.beginPasskeyRegistration({});
  const { passkey } = await passkeys.finishPasskeyRegistration({ responseJson: authenticator.create(optionsJson), name });
  assert.ok(passkey !== undefined);
  return passkey;
}

/** A passkey sign-in ceremony: begin, assert, finish. */
async function passkeySignIn(authenticator: SoftwareAuthenticator, opts: { slug?: string; mfaChallengeToken?: string; device?: string } = {}) {
  const anon = anonymousPasskeys();
  const begun = await anon.beginPasskeySignIn({ tenantSlug: opts.slug ?? tenant.slug });
  return anon.finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: authenticator.get(begun.optionsJson), device: opts.device ?? "phone", mfaChallengeToken: opts.mfaChallengeToken ?? "" });
}

async function jwks(): Promise<JSONWebKeySet> {
  const { jwksJson } = await clientFor(AuthService, mesh.identity.baseUrl).getJwks({});
  return JSON.parse(jwksJson) as JSONWebKeySet;
}

describe("passkey registration", () => {
  test("a passkey registered through a real ceremony is listed, renamed and removed, each change published", async () => {
    const { user, passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator();
    const { optionsJson } = await passkeys.beginPasskeyRegistration({});
    const options = JSON.parse(optionsJson) as { rp: { id: string; name: string }; user: { name: string }; authenticatorSelection: { residentKey: string; userVerification: string }; excludeCredentials: unknown[] };
    assert.deepEqual(options.rp, { id: "localhost", name: "Bulwark" });
    assert.equal(options.user.name, user.email);
    assert.equal(options.authenticatorSelection.residentKey, "preferred");
    assert.equal(options.authenticatorSelection.userVerification, "preferred");
    assert.deepEqual(options.excludeCredentials, []);
    const { passkey } = await passkeys.finishPasskeyRegistration({ responseJson: authenticator.create(optionsJson), name: "Work laptop" });
    assert.ok(passkey !== undefined);
    assert.match(passkey.id, /^pk_/);
    assert.equal(passkey.credentialId, authenticator.credentialIds[0]);
    assert.deepEqual(passkey.transports, ["internal", "hybrid"]);
    assert.equal(passkey.lastUsedTime, undefined);

    const listed = await passkeys.listPasskeys({});
    assert.deepEqual(
      listed.passkeys.map((p) => [p.id, p.name]),
      [[passkey.id, "Work laptop"]],
    );
    const renamed = await passkeys.renamePasskey({ passkeyId: passkey.id, name: "Old laptop" });
    assert.equal(renamed.passkey?.name, "Old laptop");
    assert.equal((await passkeys.listPasskeys({})).passkeys[0]?.name, "Old laptop");
    await passkeys.removePasskey({ passkeyId: passkey.id });
    assert.deepEqual((await passkeys.listPasskeys({})).passkeys, []);
    await refusedWith(passkeys.removePasskey({ passkeyId: passkey.id }), Code.NotFound, "passkey");

    const events = (await eventsOf(mesh, tenant.id)).filter((e) => e.aggregateId === user.id && e.type.startsWith("user.passkey_"));
    assert.deepEqual(
      events.map((e) => e.type),
      ["user.passkey_added", "user.passkey_renamed", "user.passkey_removed"],
    );
    const added = fromBinary(UserPasskeyAddedSchema, events[0]!.payload);
    assert.deepEqual([added.userId, added.passkeyId, added.name, added.mfaEnrolled], [user.id, passkey.id, "Work laptop", true]);
  });

  test("the first passkey enrols the user in MFA, and the public key and counter are stored", async () => {
    const { user, passkeys } = await userWithToken();
    const p = await register(passkeys, new SoftwareAuthenticator());
    const [u] = await identityQuery<{ mfa_enrolled: boolean }>(mesh, "select mfa_enrolled from $schema.users where id = $1", [user.id]);
    assert.equal(u?.mfa_enrolled, true);
    const [row] = await identityQuery<{ tenant_id: string; public_key: Buffer; counter: string }>(mesh, "select tenant_id, public_key, counter from $schema.passkeys where id = $1", [p.id]);
    assert.equal(row?.tenant_id, tenant.id);
    assert.ok(row!.public_key.length > 64, "the COSE public key is stored");
    assert.equal(String(row?.counter), "0");
    const res = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" });
    assert.equal(res.result.case, "mfaChallenge", "a password alone no longer signs the user in");
  });

  test("the user's existing passkeys are excluded, and a challenge registers once", async () => {
    const { passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator();
    await register(passkeys, authenticator);
    const { optionsJson } = await passkeys.beginPasskeyRegistration({});
    const excluded = (JSON.parse(optionsJson) as { excludeCredentials: { id: string }[] }).excludeCredentials.map((c) => c.id);
    assert.deepEqual(excluded, authenticator.credentialIds);
    const other = new SoftwareAuthenticator();
    const response = other.create(optionsJson);
    await passkeys.finishPasskeyRegistration({ responseJson: response, name: "Second" });
    await refusedWith(passkeys.finishPasskeyRegistration({ responseJson: response, name: "Second again" }), Code.InvalidArgument, "response_json");
    assert.equal((await passkeys.listPasskeys({})).passkeys.length, 2);
  });

  test("a registration made on another origin or malformed is refused naming response_json", async () => {
    const { passkeys } = await userWithToken();
    const { optionsJson } = await passkeys.beginPasskeyRegistration({});
    await refusedWith(passkeys.finishPasskeyRegistration({ responseJson: new SoftwareAuthenticator({ origin: "https://evil.example" }).create(optionsJson), name: "Phished" }), Code.InvalidArgument, "response_json");
    await refusedWith(passkeys.finishPasskeyRegistration({ responseJson: "{not json", name: "Broken" }), Code.InvalidArgument, "response_json");
    await refusedWith(passkeys.finishPasskeyRegistration({ responseJson: "{}", name: "" }), Code.InvalidArgument, "name");
    assert.deepEqual((await passkeys.listPasskeys({})).passkeys, []);
  });

  test("another user's passkey can be neither renamed nor removed", async () => {
    const owner = await userWithToken();
    const p = await register(owner.passkeys, new SoftwareAuthenticator());
    const other = await userWithToken();
    await refusedWith(other.passkeys.renamePasskey({ passkeyId: p.id, name: "Mine now" }), Code.NotFound, "passkey");
    await refusedWith(other.passkeys.removePasskey({ passkeyId: p.id }), Code.NotFound, "passkey");
    assert.deepEqual((await other.passkeys.listPasskeys({})).passkeys, []);
    assert.equal((await owner.passkeys.listPasskeys({})).passkeys[0]?.name, "Work laptop");
  });

  test("the passkey RPCs need a credential", async () => {
    await refusedWith(anonymousPasskeys().listPasskeys({}), Code.Unauthenticated);
    await refusedWith(anonymousPasskeys().beginPasskeyRegistration({}), Code.Unauthenticated);
  });
});

describe("a passkey as the enrolment of a required second factor", () => {
  test("an owner with enrolment-only tokens registers a passkey and then holds full tokens", async () => {
    const owner = await createUser(mesh, tenant, { roles: ["system:owner"] });
    const first = await signIn(mesh, owner);
    assert.equal(first.mfaEnrollmentRequired, true);
    assert.ok(claimsOf(first.accessToken).perms.includes("identity.passkeys.self"), "the enrolment-only token may register a passkey");
    const authenticator = new SoftwareAuthenticator();
    const passkeys = passkeysOf(first.accessToken);
    await register(passkeys, authenticator, "Owner's laptop");
    await refusedWith(passkeys.renamePasskey({ passkeyId: "pk_x", name: "y" }), Code.NotFound);
    const { tokens: refreshed } = await anonymousAuth(mesh).refreshTokens({ refreshToken: first.refreshToken });
    assert.equal(refreshed?.mfaEnrollmentRequired, false);
    assert.ok(claimsOf(refreshed!.accessToken).perms.includes("identity.users.delete"));
    const res = await passkeySignIn(authenticator);
    assert.equal(res.result.case, "tokens");
    const tokens = res.result.value as TokenPair;
    assert.equal(tokens.mfaEnrollmentRequired, false);
    assert.ok(claimsOf(tokens.accessToken).perms.includes("identity.roles.assign_owner"));
  });
});

describe("passkey sign-in", () => {
  test("a passkey with user verification signs in alone, with tokens that identity and tenancy accept", async () => {
    const { user, passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator();
    const p = await register(passkeys, authenticator);
    const begun = await anonymousPasskeys().beginPasskeySignIn({ tenantSlug: tenant.slug });
    const options = JSON.parse(begun.optionsJson) as { allowCredentials?: unknown[]; rpId: string; userVerification: string; challenge: string };
    assert.deepEqual(options.allowCredentials ?? [], [], "discoverable credentials: no allow list");
    assert.equal(options.rpId, "localhost");
    assert.equal(options.challenge, begun.challengeId);
    const res = await anonymousPasskeys("10.7.7.7").finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: authenticator.get(begun.optionsJson), device: "phone", mfaChallengeToken: "" });
    assert.equal(res.result.case, "tokens");
    const tokens = res.result.value as TokenPair;
    const { payload } = await jwtVerify(tokens.accessToken, createLocalJWKSet(await jwks()), { issuer: "bulwark-identity", algorithms: ["EdDSA"] });
    assert.equal(payload.sub, user.id);
    assert.equal(claimsOf(tokens.accessToken).ten, tenant.id);
    const { sessions } = await clientFor(SessionService, mesh.identity.baseUrl, tokens.accessToken).listMySessions({});
    assert.ok(sessions.some((s) => s.id === tokens.sessionId && s.device === "phone"));
    const { tenant: t } = await clientFor(TenancyService, mesh.tenancy.baseUrl, tokens.accessToken).getTenant({ tenantId: tenant.id });
    assert.equal(t?.id, tenant.id);
    const listed = (await passkeys.listPasskeys({})).passkeys.find((x) => x.id === p.id);
    assert.ok(listed?.lastUsedTime !== undefined, "last use is recorded");
    const [row] = await identityQuery<{ counter: string }>(mesh, "select counter from $schema.passkeys where id = $1", [p.id]);
    assert.equal(String(row?.counter), "1");
    assert.ok((await eventsOf(mesh, tenant.id)).some((e) => e.type === "user.signed_in" && e.aggregateId === user.id));
  });

  test("a passkey without user verification is one factor: an MFA challenge follows", async () => {
    const { passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator({ userVerification: false });
    await register(passkeys, authenticator);
    const res = await passkeySignIn(authenticator);
    assert.equal(res.result.case, "mfaChallenge");
  });

  test("a passkey completes a password sign-in's MFA challenge, once, on the password sign-in's device", async () => {
    const { user, passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator({ userVerification: false });
    await register(passkeys, authenticator);
    const first = await anonymousAuth(mesh, "10.3.3.3").signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "desk pc" });
    assert.equal(first.result.case, "mfaChallenge");
    const challengeToken = first.result.case === "mfaChallenge" ? first.result.value.challengeToken : "";
    const res = await passkeySignIn(authenticator, { mfaChallengeToken: challengeToken, device: "ignored" });
    assert.equal(res.result.case, "tokens");
    const tokens = res.result.value as TokenPair;
    assert.equal(claimsOf(tokens.accessToken).sub, user.id);
    const [session] = await identityQuery<{ device: string; ip_address: string }>(mesh, "select device, ip_address from $schema.sessions where id = $1", [tokens.sessionId]);
    assert.deepEqual({ ...session }, { device: "desk pc", ip_address: "10.3.3.3" });
    await refusedWith(passkeySignIn(authenticator, { mfaChallengeToken: challengeToken }), Code.Unauthenticated, "invalid credentials");
  });

  test("a passkey cannot finish an MFA challenge that wrong codes exhausted, nor an expired one", async () => {
    const { user, passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator({ userVerification: false });
    await register(passkeys, authenticator);
    const challengeOf = async (): Promise<string> => {
      const res = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" });
      assert.equal(res.result.case, "mfaChallenge");
      return res.result.case === "mfaChallenge" ? res.result.value.challengeToken : "";
    };
    const exhausted = await challengeOf();
    const mfa = clientFor(MfaService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.5.6.7" });
    for (let i = 0; i < maxChallengeAttempts; i++) {
      await refusedWith(mfa.verifyMfaChallenge({ challengeToken: exhausted, factor: { case: "totpCode", value: "000000" } }), Code.Unauthenticated);
    }
    const used = await refusedWith(passkeySignIn(authenticator, { mfaChallengeToken: "never-issued-challenge-token" }), Code.Unauthenticated);
    const refused = await refusedWith(passkeySignIn(authenticator, { mfaChallengeToken: exhausted }), Code.Unauthenticated);
    assert.equal(refused.rawMessage, used.rawMessage, "the same answer as any invalid challenge");
    const expired = await challengeOf();
    await identityQuery(mesh, "update $schema.mfa_challenges set expires_at = now() - interval '1 second' where user_id = $1", [user.id]);
    await refusedWith(passkeySignIn(authenticator, { mfaChallengeToken: expired }), Code.Unauthenticated, used.rawMessage);
    const sessions = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.sessions where user_id = $1", [user.id]);
    assert.equal(sessions[0]?.n, 1, "no session but the password-only one the test started with");
  });

  test("a user whose only factor is a passkey without user verification gets it named in the second factor's options, and signs in", async () => {
    const { user, passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator({ userVerification: false });
    const p = await register(passkeys, authenticator);
    const first = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "desk pc" });
    assert.equal(first.result.case, "mfaChallenge");
    const challenge = first.result.case === "mfaChallenge" ? first.result.value : undefined;
    assert.deepEqual(challenge?.methods, ["passkey"]);
    const anon = anonymousPasskeys();
    const begun = await anon.beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: challenge!.challengeToken });
    const options = JSON.parse(begun.optionsJson) as { allowCredentials?: { id: string; type: string; transports?: string[] }[] };
    assert.deepEqual(options.allowCredentials, [{ id: p.credentialId, type: "public-key", transports: ["internal", "hybrid"] }]);
    const res = await anon.finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: authenticator.get(begun.optionsJson), device: "", mfaChallengeToken: challenge!.challengeToken });
    assert.equal(res.result.case, "tokens");
    assert.equal(claimsOf((res.result.value as TokenPair).accessToken).sub, user.id);
  });

  test("a sign-in challenge begun for one user's MFA challenge takes no other user's passkey, and an invalid MFA challenge begins nothing", async () => {
    const victim = await userWithToken();
    await register(victim.passkeys, new SoftwareAuthenticator({ userVerification: false }));
    const attacker = await userWithToken();
    const attackerKey = new SoftwareAuthenticator();
    await register(attacker.passkeys, attackerKey);
    const first = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: victim.user.email, password: victim.user.password, device: "laptop" });
    const token = first.result.case === "mfaChallenge" ? first.result.value.challengeToken : "";
    const anon = anonymousPasskeys();
    const begun = await anon.beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: token });
    // The attacker's browser ignores the allow list and answers with their own (user-verifying) passkey, as a first factor.
    const unrestricted = JSON.stringify({ ...(JSON.parse(begun.optionsJson) as object), allowCredentials: [] });
    await refusedWith(anon.finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: attackerKey.get(unrestricted), device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
    await refusedWith(anon.beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: "not-a-challenge-token" }), Code.Unauthenticated, "invalid credentials");
    const other = await tenantWithSlug(mesh);
    await refusedWith(anon.beginPasskeySignIn({ tenantSlug: other.slug, mfaChallengeToken: token }), Code.Unauthenticated, "invalid credentials");
  });

  test("another user's passkey cannot answer an MFA challenge", async () => {
    const victim = await userWithToken();
    await register(victim.passkeys, new SoftwareAuthenticator());
    const attacker = await userWithToken();
    const attackerKey = new SoftwareAuthenticator();
    await register(attacker.passkeys, attackerKey);
    const first = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: victim.user.email, password: victim.user.password, device: "laptop" });
    assert.equal(first.result.case, "mfaChallenge");
    const token = first.result.case === "mfaChallenge" ? first.result.value.challengeToken : "";
    await refusedWith(passkeySignIn(attackerKey, { mfaChallengeToken: token }), Code.Unauthenticated, "invalid credentials");
  });

  test("a passkey of another tenant is refused", async () => {
    const other = await tenantWithSlug(mesh);
    const { passkeys } = await userWithToken(other);
    const authenticator = new SoftwareAuthenticator();
    await register(passkeys, authenticator);
    await refusedWith(passkeySignIn(authenticator, { slug: tenant.slug }), Code.Unauthenticated, "invalid credentials");
    assert.equal((await passkeySignIn(authenticator, { slug: other.slug })).result.case, "tokens");
  });

  test("one credential id registered in two tenants works in both, each signing in to its own tenant", async () => {
    const other = await tenantWithSlug(mesh);
    const here = await userWithToken();
    const there = await userWithToken(other);
    // Authenticators choose credential ids, so two keys can arrive under one id; each tenant must keep its own.
    const mine = new SoftwareAuthenticator();
    const first = await register(here.passkeys, mine);
    const theirs = new SoftwareAuthenticator();
    const { optionsJson } = await there.passkeys.beginPasskeyRegistration({});
    const second = (await there.passkeys.finishPasskeyRegistration({ responseJson: theirs.create(optionsJson, { credentialId: first.credentialId }), name: "Same id" })).passkey;
    assert.equal(second?.credentialId, first.credentialId);
    const inHere = await passkeySignIn(mine);
    const inThere = await passkeySignIn(theirs, { slug: other.slug });
    assert.equal(inHere.result.case, "tokens");
    assert.equal(inThere.result.case, "tokens");
    const a = claimsOf((inHere.result.value as TokenPair).accessToken);
    const b = claimsOf((inThere.result.value as TokenPair).accessToken);
    assert.deepEqual([a.ten, a.sub], [tenant.id, here.user.id]);
    assert.deepEqual([b.ten, b.sub], [other.id, there.user.id]);
    // Each tenant checks the assertion against its own key for that id.
    await refusedWith(passkeySignIn(mine, { slug: other.slug }), Code.Unauthenticated, "invalid credentials");
    await refusedWith(passkeySignIn(theirs), Code.Unauthenticated, "invalid credentials");
    // Within one tenant a credential id stays unique.
    const third = await userWithToken();
    const again = await third.passkeys.beginPasskeyRegistration({});
    await refusedWith(third.passkeys.finishPasskeyRegistration({ responseJson: new SoftwareAuthenticator().create(again.optionsJson, { credentialId: first.credentialId }), name: "Taken" }), Code.AlreadyExists);
  });

  test("a cloned authenticator is refused once the original has moved its counter on, and the clone is reported", async () => {
    const { user, passkeys } = await userWithToken();
    const original = new SoftwareAuthenticator();
    const p = await register(passkeys, original);
    const clone = original.clone();
    assert.equal((await passkeySignIn(original)).result.case, "tokens");
    await refusedWith(passkeySignIn(clone), Code.Unauthenticated, "invalid credentials");
    const reported = (await eventsOf(mesh, tenant.id)).filter((e) => e.type === "user.passkey_clone_suspected" && e.aggregateId === user.id).map((e) => fromBinary(PasskeyCloneSuspectedSchema, e.payload));
    assert.equal(reported.length, 1);
    assert.deepEqual([reported[0]!.passkeyId, reported[0]!.storedCounter, reported[0]!.presentedCounter], [p.id, 1n, 1n]);
    assert.equal((await passkeySignIn(original)).result.case, "tokens", "the original keeps working");
  });

  test("an assertion made on another origin, or for another challenge, is refused; a challenge signs in once", async () => {
    const { passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator();
    await register(passkeys, authenticator);
    await refusedWith(passkeySignIn(authenticator.clone({ origin: "https://evil.example" })), Code.Unauthenticated, "invalid credentials");
    const anon = anonymousPasskeys();
    const a = await anon.beginPasskeySignIn({ tenantSlug: tenant.slug });
    const b = await anon.beginPasskeySignIn({ tenantSlug: tenant.slug });
    await refusedWith(anon.finishPasskeySignIn({ challengeId: b.challengeId, responseJson: authenticator.get(a.optionsJson), device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
    const response = authenticator.get(b.optionsJson);
    assert.equal((await anon.finishPasskeySignIn({ challengeId: b.challengeId, responseJson: response, device: "", mfaChallengeToken: "" })).result.case, "tokens");
    await refusedWith(anon.finishPasskeySignIn({ challengeId: b.challengeId, responseJson: response, device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
  });

  test("an unknown tenant gets options like any other, but nothing signs in with them", async () => {
    const authenticator = new SoftwareAuthenticator();
    const { passkeys } = await userWithToken();
    await register(passkeys, authenticator);
    const res = await anonymousPasskeys().beginPasskeySignIn({ tenantSlug: "no-such-tenant-here" });
    assert.ok(res.challengeId.length > 20);
    await refusedWith(anonymousPasskeys().finishPasskeySignIn({ challengeId: res.challengeId, responseJson: authenticator.get(res.optionsJson), device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
  });

  test("a suspended user cannot sign in with a passkey", async () => {
    const { user, passkeys } = await userWithToken();
    const authenticator = new SoftwareAuthenticator();
    await register(passkeys, authenticator);
    await identityQuery(mesh, "update $schema.users set state = 'SUSPENDED' where id = $1", [user.id]);
    await refusedWith(passkeySignIn(authenticator), Code.Unauthenticated, "invalid credentials");
  });
});
