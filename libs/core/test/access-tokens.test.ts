import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JSONWebKeySet } from "jose";
import { AccessTokenVerifier, CachedJwksSource, RevokedSessions, resolvePrincipal, BootstrapCredentialResolver, isPlatformPrincipal, operatorTokenKind } from "../src/index.js";

const headers = (token: string): Headers => new Headers({ authorization: `Bearer ${token}` });
const isUnauthenticated = (e: unknown): boolean => e instanceof ConnectError && e.code === Code.Unauthenticated;

async function keyPair(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" } };
}

async function sign(key: { kid: string; privateKey: CryptoKey }, claims: Record<string, unknown> = {}, exp: string | number = "5m"): Promise<string> {
  return new SignJWT({ ten: "ten_a", sid: "ses_1", roles: ["system:member"], perms: ["tenancy.tenants.read"], ...claims })
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ: "at+jwt" })
    .setIssuer("bulwark-identity")
    .setAudience("bulwark")
    .setSubject("usr_1")
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(key.privateKey);
}

test("a valid access token resolves to the user principal it names", async () => {
  const k = await keyPair("k1");
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked: new RevokedSessions() });
  const p = await verifier.resolve(headers(await sign(k)));
  assert.deepEqual({ ...p, permissions: [...p!.permissions] }, { id: "usr_1", kind: "user", tenantId: "ten_a", permissions: ["tenancy.tenants.read"], sessionId: "ses_1", roles: ["system:member"] });
});

test("a token's roles claim becomes the principal's roles (for the audit trail); non-strings are dropped and an empty list is none", async () => {
  const k = await keyPair("k1");
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked: new RevokedSessions() });
  assert.deepEqual((await verifier.resolve(headers(await sign(k, { roles: ["system:admin", 7, "rol_x", "", "r".repeat(200)] }))))?.roles, ["system:admin", "rol_x"]);
  assert.equal((await verifier.resolve(headers(await sign(k, { roles: [] }))))?.roles, undefined);
  assert.equal((await verifier.resolve(headers(await sign(k, { roles: "system:owner" }))))?.roles, undefined);
});

test("a token's auth_time claim becomes the principal's authTime; a malformed one is ignored", async () => {
  const k = await keyPair("k1");
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked: new RevokedSessions() });
  assert.equal((await verifier.resolve(headers(await sign(k, { auth_time: 1_700_000_000 }))))?.authTime, 1_700_000_000);
  assert.equal((await verifier.resolve(headers(await sign(k, { auth_time: "yesterday" }))))?.authTime, undefined);
});

test("a bearer token that is not a JWT is left to the other resolvers", async () => {
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [] })), revoked: new RevokedSessions() });
  assert.equal(await verifier.resolve(headers("a-bootstrap-token-of-enough-length")), undefined);
  const p = await resolvePrincipal([verifier, new BootstrapCredentialResolver("a-bootstrap-token-of-enough-length")], headers("a-bootstrap-token-of-enough-length"));
  assert.equal(p?.kind, "bootstrap");
});

test("expired, foreign-key, wrong-issuer and revoked tokens are UNAUTHENTICATED", async () => {
  const k = await keyPair("k1");
  const stranger = await keyPair("k1");
  const revoked = new RevokedSessions();
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked, clockToleranceS: 0 });
  await assert.rejects(verifier.resolve(headers(await sign(k, {}, Math.floor(Date.now() / 1000) - 10))), (e) => isUnauthenticated(e) && /expired/.test((e as ConnectError).rawMessage));
  await assert.rejects(verifier.resolve(headers(await sign(stranger))), isUnauthenticated);
  const wrongIssuer = await new SignJWT({ ten: "ten_a", sid: "ses_1", perms: [] }).setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" }).setIssuer("someone-else").setSubject("usr_1").setIssuedAt().setExpirationTime("5m").sign(k.privateKey);
  await assert.rejects(verifier.resolve(headers(wrongIssuer)), isUnauthenticated);
  const noAudience = await new SignJWT({ ten: "ten_a", sid: "ses_1", perms: [] }).setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" }).setIssuer("bulwark-identity").setSubject("usr_1").setIssuedAt().setExpirationTime("5m").sign(k.privateKey);
  await assert.rejects(verifier.resolve(headers(noAudience)), isUnauthenticated);
  const otherAudience = await new SignJWT({ ten: "ten_a", sid: "ses_1", perms: [] }).setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" }).setIssuer("bulwark-identity").setAudience("some-app").setSubject("usr_1").setIssuedAt().setExpirationTime("5m").sign(k.privateKey);
  await assert.rejects(verifier.resolve(headers(otherAudience)), isUnauthenticated);
  const token = await sign(k, { sid: "ses_revoked" });
  assert.ok(await verifier.resolve(headers(token)));
  revoked.revoke("ses_revoked", Math.floor(Date.now() / 1000) + 60);
  await assert.rejects(verifier.resolve(headers(token)), (e) => isUnauthenticated(e) && /revoked/.test((e as ConnectError).rawMessage));
});

test("an unknown kid refetches the key set once (identity rotated), and a flood of unknown kids does not", async () => {
  const k1 = await keyPair("k1");
  const k2 = await keyPair("k2");
  let published: JSONWebKeySet = { keys: [k1.jwk] };
  let fetches = 0;
  const source = new CachedJwksSource(
    async () => {
      fetches++;
      return published;
    },
    { minRefreshIntervalMs: 50 },
  );
  const verifier = new AccessTokenVerifier({ source, revoked: new RevokedSessions() });
  assert.ok(await verifier.resolve(headers(await sign(k1))));
  assert.equal(fetches, 1);
  published = { keys: [k2.jwk, k1.jwk] };
  await new Promise((r) => setTimeout(r, 60));
  assert.ok(await verifier.resolve(headers(await sign(k2))));
  assert.equal(fetches, 2);
  const forged = await keyPair("k9");
  await Promise.allSettled(Array.from({ length: 20 }, async () => verifier.resolve(headers(await sign(forged)))));
  assert.ok(fetches <= 3, `fetched ${fetches} times`);
});

test("revocations are forgotten once the session's tokens have expired", () => {
  const r = new RevokedSessions();
  r.revoke("ses_old", Math.floor(Date.now() / 1000) - 1);
  r.revoke("ses_new", Math.floor(Date.now() / 1000) + 60);
  assert.equal(r.isRevoked("ses_old"), false);
  assert.equal(r.isRevoked("ses_new"), true);
});

test("an operator token (kind operator, no tenant) resolves to a platform principal without a tenant", async () => {
  const k = await keyPair("k1");
  const revoked = new RevokedSessions();
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked });
  const token = await new SignJWT({ kind: operatorTokenKind, sid: "ses_op", roles: [], perms: ["*"] })
    .setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" })
    .setIssuer("bulwark-identity")
    .setAudience("bulwark")
    .setSubject("opr_1")
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(k.privateKey);
  const p = await verifier.resolve(headers(token));
  assert.deepEqual({ ...p, permissions: [...p!.permissions] }, { id: "opr_1", kind: "operator", permissions: ["*"], sessionId: "ses_op" });
  assert.equal(isPlatformPrincipal(p!), true);
  revoked.revoke("ses_op", Math.floor(Date.now() / 1000) + 60);
  await assert.rejects(verifier.resolve(headers(token)), isUnauthenticated);
});

test("a token claiming to be an operator's while naming a tenant, or a non-operator subject, is refused; a user token without a tenant too", async () => {
  const k = await keyPair("k1");
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked: new RevokedSessions() });
  await assert.rejects(verifier.resolve(headers(await sign(k, { kind: operatorTokenKind }))), isUnauthenticated);
  await assert.rejects(verifier.resolve(headers(await sign(k, { kind: operatorTokenKind, ten: undefined }))), isUnauthenticated);
  await assert.rejects(verifier.resolve(headers(await sign(k, { ten: undefined }))), isUnauthenticated);
  const p = await verifier.resolve(headers(await sign(k, { kind: "user" })));
  assert.equal(p?.kind, "user");
  assert.equal(isPlatformPrincipal(p!), false);
});

test("a remembered token is still refused once it expires or its session is revoked", async () => {
  const k = await keyPair("k1");
  const revoked = new RevokedSessions();
  let fetches = 0;
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => (fetches++, { keys: [k.jwk] })), revoked, clockToleranceS: 0 });
  const shortLived = await sign(k, { sid: "ses_short" }, Math.floor(Date.now() / 1000) + 1);
  assert.ok(await verifier.resolve(headers(shortLived)));
  assert.ok(await verifier.resolve(headers(shortLived)), "the second use comes from memory");
  await new Promise((r) => setTimeout(r, 1100));
  await assert.rejects(verifier.resolve(headers(shortLived)), isUnauthenticated);
  assert.equal(fetches, 1);
});

test("a token of a user whose permissions were reduced is refused until refreshed under the new epoch", async () => {
  const k = await keyPair("k1");
  const revoked = new RevokedSessions();
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => ({ keys: [k.jwk] })), revoked });
  const old = await sign(k, { pep: 3 });
  assert.ok(await verifier.resolve(headers(old)));
  revoked.reduceGrants("usr_1", 4, Math.floor(Date.now() / 1000) + 60);
  await assert.rejects(verifier.resolve(headers(old)), (e) => isUnauthenticated(e) && /permissions/.test((e as ConnectError).rawMessage));
  assert.ok(await verifier.resolve(headers(await sign(k, { pep: 4 }))), "a token of the new epoch is accepted");
  revoked.reduceGrants("usr_1", 2, Math.floor(Date.now() / 1000) + 60);
  assert.ok(await verifier.resolve(headers(await sign(k, { pep: 4 }))), "an older reduction arriving late changes nothing");
});

test("tokens remembered as verified are forgotten when identity withdraws their key", async () => {
  const k1 = await keyPair("k1");
  const k2 = await keyPair("k2");
  let published: JSONWebKeySet = { keys: [k1.jwk, k2.jwk] };
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => published, { ttlMs: 0 }), revoked: new RevokedSessions() });
  const token = await sign(k1);
  assert.ok(await verifier.resolve(headers(token)));
  published = { keys: [k2.jwk] };
  await new Promise((r) => setTimeout(r, 5_100));
  await assert.rejects(verifier.resolve(headers(token)), isUnauthenticated);
});

test("a flood of tokens naming unknown key ids costs at most one key-set fetch per interval", async () => {
  const k = await keyPair("k1");
  let fetches = 0;
  const verifier = new AccessTokenVerifier({ source: new CachedJwksSource(async () => (fetches++, { keys: [k.jwk] }), { minRefreshIntervalMs: 0 }), revoked: new RevokedSessions() });
  assert.ok(await verifier.resolve(headers(await sign(k))));
  const forged = await keyPair("k-forged");
  const token = await sign(forged);
  for (let i = 0; i < 50; i++) await assert.rejects(verifier.resolve(headers(token)), isUnauthenticated);
  assert.ok(fetches <= 2, `fetched ${fetches} times for one unknown kid`);
});
