/**
 * API keys across the mesh: tenancy and identity accept `authorization:
 * Bearer <API key>` on the RPCs the key's permissions allow and refuse the
 * others; a revoked key and a demoted creator's key are refused by another
 * service within a second (the key events clear every resolver's cache);
 * a service whose keys is not deployed refuses API keys UNAVAILABLE,
 * naming keys but not its address, and keeps serving other credentials;
 * and keys running as its own process at LOG_LEVEL=debug never logs a
 * secret.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, type Client } from "@connectrpc/connect";
import { ApiKeyService, Environment, RoleService, TenancyService, UserService } from "@bulwark/contracts";
import { parseApiKey } from "@bulwark/core";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, dropTestService, eventually, startTestService, type Started } from "../support/harness.js";
import { apiKeysAs, keysTenant, keysUser, startKeysMesh, testKeysModule, userPrincipal, type KeysMesh } from "../contract/support-apikeys.js";
import { createUser, signIn, tenantWithSlug } from "../contract/support-auth.js";
import { envFor, expectCode, freePort, spawnService, type ChildService } from "./support-e2e.js";

const withinMs = 1_000;

describe("API keys across the mesh", () => {
  let mesh: KeysMesh;
  let tenantId: string;
  before(async () => {
    mesh = await startKeysMesh();
    tenantId = await keysTenant(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  async function keyFor(roles: string[], scopes: string[]): Promise<{ key: string; keyId: string; userId: string }> {
    const user = await keysUser(mesh, tenantId, roles);
    const res = await apiKeysAs(mesh, userPrincipal(user)).createApiKey({ name: "mesh", environment: Environment.LIVE, scopes });
    return { key: res.token, keyId: res.key!.id, userId: user.id };
  }

  const tenancyWith = (key: string): Client<typeof TenancyService> => clientFor(TenancyService, mesh.tenancy.baseUrl, key);
  const usersWith = (key: string): Client<typeof UserService> => clientFor(UserService, mesh.identity.baseUrl, key);

  test("tenancy and identity accept an API key on the RPCs its permissions allow and refuse it on the others", async () => {
    const { key } = await keyFor(["system:admin"], ["read"]);
    assert.equal((await tenancyWith(key).getTenant({ tenantId })).tenant?.id, tenantId);
    assert.ok((await tenancyWith(key).getSecurityPolicy({ tenantId })).policy !== undefined);
    assert.ok((await usersWith(key).listUsers({})).users.length > 0);
    await expectCode(tenancyWith(key).updateTenant({ tenantId, displayName: "Renamed", updateMask: { paths: ["display_name"] } }), Code.PermissionDenied);
    await expectCode(usersWith(key).createUser({ email: "someone@example.test", displayName: "Someone", roleIds: [] }), Code.PermissionDenied);
    // The key's tenant is the only one it reaches.
    const other = await keysTenant(mesh);
    await expectCode(tenancyWith(key).getTenant({ tenantId: other }), Code.NotFound);
    await expectCode(clientFor(TenancyService, mesh.tenancy.baseUrl, key, "grpc", { "bulwark-tenant": other }).getTenant({ tenantId: other }), Code.PermissionDenied);
    // A well-formed key with a bad checksum never reaches keys.
    await expectCode(tenancyWith(`${key.slice(0, -1)}${key.endsWith("a") ? "b" : "a"}`).getTenant({ tenantId }), Code.Unauthenticated);
  });

  test("a revoked key is refused by another service within a second", async () => {
    const { key, keyId, userId } = await keyFor(["system:developer"], ["read"]);
    assert.equal((await tenancyWith(key).getTenant({ tenantId })).tenant?.id, tenantId, "verified once and cached by tenancy");
    const t0 = Date.now();
    await apiKeysAs(mesh, { id: userId, kind: "user", tenantId, permissions: new Set(["keys.api_keys.revoke"]) }).revokeApiKey({ keyId });
    await eventually(async () => (await tenancyWith(key).getTenant({ tenantId }).then(() => "ok", (e: { code?: Code }) => e.code)) === Code.Unauthenticated, withinMs + 500, 20);
    const took = Date.now() - t0;
    assert.ok(took <= withinMs, `took ${took} ms`);
    await expectCode(usersWith(key).listUsers({}), Code.Unauthenticated);
  });

  test("a key follows its creator's demotion in another service within a second", async () => {
    const { key, userId } = await keyFor(["system:admin"], ["admin"]);
    const policy = (await tenancyWith(key).getSecurityPolicy({ tenantId })).policy!;
    const update = { tenantId, policy: { passwordMinLength: policy.passwordMinLength }, updateMask: { paths: ["password_min_length"] } };
    await tenancyWith(key).updateSecurityPolicy(update);
    const roles = clientFor(RoleService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantId });
    await roles.assignRole({ userId, roleId: "system:member" });
    const t0 = Date.now();
    await roles.revokeRole({ userId, roleId: "system:admin" });
    await eventually(async () => (await tenancyWith(key).updateSecurityPolicy(update).then(() => "ok", (e: { code?: Code }) => e.code)) === Code.PermissionDenied, withinMs + 500, 20);
    const took = Date.now() - t0;
    assert.ok(took <= withinMs, `took ${took} ms`);
    // What the member still holds keeps working.
    assert.equal((await tenancyWith(key).getTenant({ tenantId })).tenant?.id, tenantId);
  });

  test("the keys of a suspended owner are refused by another service", async () => {
    const { key, userId } = await keyFor(["system:developer"], ["read"]);
    await tenancyWith(key).getTenant({ tenantId });
    await clientFor(UserService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantId }).suspendUser({ userId, reason: "on leave" });
    await eventually(async () => (await tenancyWith(key).getTenant({ tenantId }).then(() => "ok", (e: { code?: Code }) => e.code)) === Code.Unauthenticated, 5_000, 20);
  });

  test("without keys deployed, an API key is refused UNAVAILABLE naming keys, never its address, and other credentials still work", async () => {
    const { key } = await keyFor(["system:developer"], ["read"]);
    const closed = await freePort();
    const lonely = await startTestService(tenancyModule, { env: { KEYS_URL: `http://127.0.0.1:${closed}`, IDENTITY_URL: mesh.identity.baseUrl } });
    try {
      const err = await expectCode(clientFor(TenancyService, lonely.baseUrl, key).getTenant({ tenantId }), Code.Unavailable);
      assert.match(err.rawMessage, /keys service/);
      assert.doesNotMatch(err.rawMessage, /127\.0\.0\.1|:\d{2,5}|ECONNREFUSED/);
      const ops = clientFor(TenancyService, lonely.baseUrl, bootstrapToken);
      assert.ok((await ops.listTenants({})).tenants !== undefined);
    } finally {
      await lonely.stop();
    }
  });
});

describe("keys in its own process", () => {
  let mesh: KeysMesh;
  let child: ChildService;
  let keysUrl: string;
  let migrated: Started;

  before(async () => {
    mesh = await startKeysMesh();
    // A second keys on its own schema, migrated in process, then run as a child at LOG_LEVEL=debug.
    migrated = await startTestService(testKeysModule, { keep: true, prefix: mesh.prefix, env: { TENANCY_URL: mesh.tenancy.baseUrl, IDENTITY_URL: mesh.identity.baseUrl } });
    await migrated.stop();
    const port = await freePort();
    child = spawnService(envFor(migrated.config, { LOG_LEVEL: "debug", PORT: String(port), TENANCY_URL: mesh.tenancy.baseUrl, IDENTITY_URL: mesh.identity.baseUrl }), new URL("../../../services/keys/dist/src/main.js", import.meta.url).pathname);
    await child.ready(port);
    keysUrl = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await child?.kill();
    if (migrated !== undefined) await dropTestService(migrated.config.DATABASE_SCHEMA, migrated.prefix, "keys");
    await mesh?.stop();
  });

  test("secrets never appear in keys' logs, whatever it is asked", async () => {
    // A real user signs in with identity; the child verifies the access token like any service.
    const tenant = await tenantWithSlug(mesh);
    const user = await createUser(mesh, tenant, { roles: ["system:developer"] });
    const { accessToken } = await signIn(mesh, user);
    const asUser = clientFor(ApiKeyService, keysUrl, accessToken);
    const created = await asUser.createApiKey({ name: "logs", environment: Environment.LIVE, scopes: ["read"] });
    const secret = parseApiKey(created.token)!.secret;
    const withKey = clientFor(ApiKeyService, keysUrl, created.token);
    assert.deepEqual((await withKey.listApiKeys({})).keys.map((k) => k.id), [created.key!.id], "keys accepts its own keys in process");
    await expectCode(withKey.revokeApiKey({ keyId: created.key!.id }), Code.PermissionDenied);
    await expectCode(clientFor(ApiKeyService, keysUrl, `${created.token}x`).listApiKeys({}), Code.Unauthenticated);
    await expectCode(clientFor(ApiKeyService, keysUrl, `${created.token.slice(0, -2)}zz`).listApiKeys({}), Code.Unauthenticated);
    const rotated = await asUser.rotateApiKey({ keyId: created.key!.id });
    await clientFor(ApiKeyService, keysUrl).reportExposedKeys({ keys: [{ token: created.token, type: "bulwark_api_key", url: "https://example.test/leak", source: "content" }] });
    await eventually(async () => (await withKey.listApiKeys({}).then(() => "ok", (e: { code?: Code }) => e.code)) === Code.Unauthenticated, 5_000);
    const out = child.output();
    assert.match(out, /"level":"debug"/, "debug logging is on");
    for (const s of [secret, created.token, parseApiKey(rotated.token)!.secret]) assert.ok(!out.includes(s), "a secret reached the log");
  });
});
