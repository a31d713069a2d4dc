/**
 * The mesh as deployed: tenancy verifies identity's access tokens with the
 * runtime's own wiring (keys fetched through GetJwks, revocations from
 * NATS), identity publishes its keys at /.well-known/jwks.json, and a
 * service that starts after a revocation still refuses the revoked session.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { SessionService, TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { decodeProtectedHeader } from "jose";
import { bootstrapToken, clientFor, dropTestService, eventually, startMesh, startTestService, type Started } from "../support/harness.js";
import { codeOf, expectCode } from "./support-e2e.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";

describe("identity and tenancy as one mesh", () => {
  let prefix = "";
  let tenancy: Started;
  let identity: Started;
  let late: Started | undefined;
  let mesh: IdentityMesh;
  let tenant: TestTenant;

  before(async () => {
    ({ tenancy, identity, prefix } = await startMesh({ tenancy: tenancyModule, identity: identityModule }));
    mesh = { tenancy, identity, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
    tenant = await tenantWithSlug(mesh);
  });

  after(async () => {
    await late?.stop();
    await identity?.stop();
    await tenancy?.stop();
    if (late !== undefined) await dropTestService(late.config.DATABASE_SCHEMA, prefix, "tenancy");
  });

  test("identity serves its token keys as a JWK set on the RPC port", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const res = await fetch(`${identity.baseUrl}/.well-known/jwks.json`);
    assert.equal(res.status, 200);
    const jwks = (await res.json()) as { keys: { kid: string; kty: string; d?: string }[] };
    const kid = decodeProtectedHeader(tokens.accessToken).kid;
    assert.ok(jwks.keys.some((k) => k.kid === kid && k.kty === "OKP"));
    assert.ok(jwks.keys.every((k) => k.d === undefined), "no private key material");
  });

  test("tenancy admits identity's tokens with no extra wiring and refuses a revoked session within a second", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const asUser = clientFor(TenancyService, tenancy.baseUrl, tokens.accessToken);
    assert.equal((await asUser.getTenant({ tenantId: tenant.id })).tenant?.id, tenant.id);
    await clientFor(SessionService, identity.baseUrl, tokens.accessToken).revokeSession({ sessionId: tokens.sessionId });
    const since = Date.now();
    await eventually(async () => (await codeOf(asUser.getTenant({ tenantId: tenant.id }))) === "Unauthenticated", 1500, 20);
    assert.ok(Date.now() - since <= 1000, `took ${Date.now() - since} ms`);
  });

  test("a service started after a revocation refuses that session too", async () => {
    const user = await createUser(mesh, tenant);
    const revoked = await signIn(mesh, user);
    const live = await signIn(mesh, user, "phone");
    await clientFor(SessionService, identity.baseUrl, live.accessToken).revokeSession({ sessionId: revoked.sessionId });
    await eventually(async () => (await codeOf(clientFor(TenancyService, tenancy.baseUrl, revoked.accessToken).getTenant({ tenantId: tenant.id }))) === "Unauthenticated");
    late = await startTestService(tenancyModule, { prefix, keep: true, env: { IDENTITY_URL: identity.baseUrl } });
    // The late service has its own (empty) schema: a valid token reaches the
    // handler and finds no tenant; the revoked one is refused before it.
    await expectCode(clientFor(TenancyService, late.baseUrl, live.accessToken).getTenant({ tenantId: tenant.id }), Code.NotFound);
    await expectCode(clientFor(TenancyService, late.baseUrl, revoked.accessToken).getTenant({ tenantId: tenant.id }), Code.Unauthenticated);
  });
});
