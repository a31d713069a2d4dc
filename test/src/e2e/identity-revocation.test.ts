/**
 * Access tokens work mesh-wide and stop working mesh-wide: another service
 * (tenancy, verifying identity's tokens with the keys GetJwks publishes and
 * following identity's revocations through the runtime) admits a signed-in
 * user's token, enforces the permissions it carries, and refuses it within a
 * second of the session being revoked or the permissions being reduced —
 * also after a disconnection from NATS, once it is back.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { AuthService, RoleService, SessionService, TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { SignJWT, generateKeyPair } from "jose";
import { bootstrapToken, clientFor, eventually, natsUrl, dropTestService, startMesh, startTestService, type Started, type TestMesh } from "../support/harness.js";
import { codeOf, expectCode, TcpProxy } from "./support-e2e.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";

const withinMs = 1000;

describe("access tokens across services", () => {
  let tenancy: Started;
  let identity: Started;
  let started: TestMesh;
  let mesh: IdentityMesh;
  let tenant: TestTenant;

  before(async () => {
    started = await startMesh({ tenancy: tenancyModule, identity: identityModule });
    ({ tenancy, identity } = started);
    mesh = { tenancy, identity, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
    tenant = await tenantWithSlug(mesh);
  });

  after(async () => {
    await started?.stop();
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
    assert.ok(tenancy.running.deps.revokedSessions.isRevoked(tokens.sessionId));
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
      .setAudience("bulwark")
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

  test("a revoked role stops working in tenancy within a second; the refreshed token carries the reduced permissions", async () => {
    const user = await createUser(mesh, tenant, { roles: ["system:member", "system:billing"] });
    const tokens = await signIn(mesh, user);
    const rename = (client: ReturnType<typeof clientFor<typeof TenancyService>>, name: string) =>
      client.updateTenant({ tenantId: tenant.id, displayName: name, updateMask: create(FieldMaskSchema, { paths: ["display_name"] }) });
    const asUser = clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken);
    assert.equal((await rename(asUser, "Renamed by billing")).tenant?.displayName, "Renamed by billing");
    await clientFor(RoleService, identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenant.id }).revokeRole({ userId: user.id, roleId: "system:billing" });
    const since = Date.now();
    await eventually(async () => (await codeOf(rename(asUser, "again"))) === "Unauthenticated", withinMs + 500, 20);
    const took = Date.now() - since;
    assert.ok(took <= withinMs, `took ${took} ms`);
    const { tokens: refreshed } = await clientFor(AuthService, identity.baseUrl).refreshTokens({ refreshToken: tokens.refreshToken });
    const after = clientFor(TenancyService, tenancy.baseUrl, refreshed!.accessToken);
    await expectCode(rename(after, "not any more"), Code.PermissionDenied);
    assert.equal((await after.getTenant({ tenantId: tenant.id })).tenant?.id, tenant.id);
  });

  test("a service cut off from NATS while a session is revoked refuses it once it is back, without a restart", async () => {
    const proxy = new TcpProxy("127.0.0.1", Number(new URL(natsUrl).port || 4222));
    const port = await proxy.start();
    // A second tenancy replica of the same mesh (keep: its stop must not delete the mesh's stream and bucket).
    const cutOff = await startTestService(tenancyModule, { prefix: started.prefix, keep: true, env: { IDENTITY_URL: identity.baseUrl, NATS_URL: `nats://127.0.0.1:${port}` } });
    try {
      const user = await createUser(mesh, tenant);
      const tokens = await signIn(mesh, user);
      const there = clientFor(TenancyService, cutOff.baseUrl, tokens.accessToken);
      // The replica has a schema of its own here, so the tenant is NOT_FOUND there: the token was admitted.
      assert.equal(await codeOf(there.getTenant({ tenantId: tenant.id })), "NotFound");
      await proxy.stop();
      await clientFor(SessionService, identity.baseUrl, tokens.accessToken).revokeSession({ sessionId: tokens.sessionId });
      await eventually(async () => (await codeOf(clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken).getTenant({ tenantId: tenant.id }))) === "Unauthenticated", withinMs, 20);
      await proxy.start();
      await eventually(async () => (await codeOf(there.getTenant({ tenantId: tenant.id }))) === "Unauthenticated", 10_000, 50);
    } finally {
      await proxy.start();
      await cutOff.stop();
      await proxy.stop();
      await dropTestService(cutOff.config.DATABASE_SCHEMA, `gone${Date.now()}`, "tenancy");
    }
  });
});
