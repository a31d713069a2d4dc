/**
 * Access tokens work mesh-wide and stop working mesh-wide: another service
 * (tenancy, with the shared AccessTokenVerifier fetching identity's keys
 * through GetJwks and listening for session revocations) admits a signed-in
 * user's token, enforces the permissions it carries, and refuses it within a
 * second of the session being revoked.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService, SessionService, TenancyService } from "@bulwark/contracts";
import { AccessTokenVerifier, CachedJwksSource, RevokedSessions } from "@bulwark/core";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { SignJWT, generateKeyPair } from "jose";
import { bootstrapToken, clientFor, eventually, startTestService, type Started } from "../support/harness.js";
import { codeOf, expectCode } from "./support-e2e.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";

const withinMs = 1000;

describe("access tokens across services", () => {
  let tenancy: Started;
  let identity: Started;
  let mesh: IdentityMesh;
  let tenant: TestTenant;
  let identityUrl = "";
  let unsubscribe: (() => void) | undefined;
  const revoked = new RevokedSessions();
  const source = new CachedJwksSource(async () => JSON.parse((await createClient(AuthService, createGrpcTransport({ baseUrl: identityUrl })).getJwks({})).jwksJson), { minRefreshIntervalMs: 0 });
  const verifier = new AccessTokenVerifier({ source, revoked });

  before(async () => {
    tenancy = await startTestService({ ...tenancyModule, resolvers: () => [verifier] });
    identity = await startTestService(identityModule, { env: { TENANCY_URL: tenancy.baseUrl } });
    identityUrl = identity.baseUrl;
    unsubscribe = revoked.subscribe(tenancy.running.deps.nc, identity.prefix);
    mesh = { tenancy, identity, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
    tenant = await tenantWithSlug(mesh);
  });

  after(async () => {
    unsubscribe?.();
    await identity?.stop();
    await tenancy?.stop();
  });

  test("a signed-in user's token is admitted by tenancy and refused there within a second of RevokeSession", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const asUser = clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken);
    assert.equal((await asUser.getTenant({ tenantId: tenant.id })).tenant?.id, tenant.id);
    await clientFor(SessionService, identity.baseUrl, tokens.accessToken).revokeSession({ sessionId: tokens.sessionId });
    const since = Date.now();
    await eventually(async () => (await codeOf(asUser.getTenant({ tenantId: tenant.id }))) === "Unauthenticated", withinMs + 500, 20);
    const took = Date.now() - since;
    assert.ok(took <= withinMs, `took ${took} ms`);
    assert.ok(revoked.isRevoked(tokens.sessionId));
  });

  test("the permissions in the token are what tenancy enforces: a member may read the policy but not change it", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const asUser = clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken);
    assert.equal((await asUser.getSecurityPolicy({ tenantId: tenant.id })).policy?.tenantId, tenant.id);
    await expectCode(asUser.updateSecurityPolicy({ tenantId: tenant.id, policy: { passwordMinLength: 14 }, updateMask: { paths: ["password_min_length"] } }), Code.PermissionDenied);
  });

  test("a token scoped to enrolling MFA does not reach tenancy's data", async () => {
    const admin = await createUser(mesh, tenant, { roles: ["system:admin"] });
    const tokens = await signIn(mesh, admin);
    assert.equal(tokens.mfaEnrollmentRequired, true);
    await expectCode(clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken).getTenant({ tenantId: tenant.id }), Code.PermissionDenied);
  });

  test("signing out and refresh-token reuse end the session on tenancy too", async () => {
    const user = await createUser(mesh, tenant);
    const a = await signIn(mesh, user);
    await clientFor(AuthService, identity.baseUrl, a.accessToken).signOut({});
    await eventually(async () => (await codeOf(clientFor(TenancyService, tenancy.baseUrl, a.accessToken).getTenant({ tenantId: tenant.id }))) === "Unauthenticated", withinMs, 20);

    const b = await signIn(mesh, user);
    const anon = clientFor(AuthService, identity.baseUrl);
    const { tokens: b2 } = await anon.refreshTokens({ refreshToken: b.refreshToken });
    assert.equal((await clientFor(TenancyService, tenancy.baseUrl, b2!.accessToken).getTenant({ tenantId: tenant.id })).tenant?.id, tenant.id);
    await expectCode(anon.refreshTokens({ refreshToken: b.refreshToken }), Code.Unauthenticated);
    await eventually(async () => (await codeOf(clientFor(TenancyService, tenancy.baseUrl, b2!.accessToken).getTenant({ tenantId: tenant.id }))) === "Unauthenticated", withinMs, 20);
  });

  test("a token signed by a key identity never published, or tampered with, is UNAUTHENTICATED; the bootstrap token still works", async () => {
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const forged = await new SignJWT({ ten: tenant.id, sid: "ses_forged", roles: [], perms: ["*"] })
      .setProtectedHeader({ alg: "EdDSA", kid: "sk_forged", typ: "at+jwt" })
      .setIssuer("bulwark-identity")
      .setSubject("usr_forged")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);
    await expectCode(clientFor(TenancyService, tenancy.baseUrl, forged).getTenant({ tenantId: tenant.id }), Code.Unauthenticated);
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const [h, p, s] = tokens.accessToken.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, perms: ["*"] })).toString("base64url")}.${s}`;
    await expectCode(clientFor(TenancyService, tenancy.baseUrl, tampered).getTenant({ tenantId: tenant.id }), Code.Unauthenticated);
    assert.equal((await clientFor(TenancyService, tenancy.baseUrl, bootstrapToken).getTenant({ tenantId: tenant.id })).tenant?.id, tenant.id);
  });
});
