import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { BootstrapCredentialResolver, currentContext, loadConfig, ConfigError, MeshKeys, rawPublicKey, resolvePrincipal, runAsService, ServiceAssertions, StaticTokenResolver } from "../src/index.js";

const headers = (auth?: string): Headers => new Headers(auth === undefined ? {} : { authorization: auth });

test("the bootstrap token resolves to a platform principal holding every permission", async () => {
  const r = new BootstrapCredentialResolver("a-bootstrap-token-of-enough-length");
  const p = await resolvePrincipal([r], headers("Bearer a-bootstrap-token-of-enough-length"));
  assert.equal(p?.kind, "bootstrap");
  assert.equal(p?.tenantId, undefined);
  assert.ok(p?.permissions.has("*"));
});

test("an unknown bearer token is UNAUTHENTICATED and no credential is anonymous", async () => {
  const r = new BootstrapCredentialResolver("a-bootstrap-token-of-enough-length");
  await assert.rejects(resolvePrincipal([r], headers("Bearer wrong")), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  assert.equal(await resolvePrincipal([r], headers()), undefined);
});

test("static tokens resolve to their principals", async () => {
  const r = new StaticTokenResolver([]);
  r.add("t1", { id: "usr_1", kind: "user", tenantId: "ten_a", permissions: new Set(["x"]) });
  assert.equal((await r.resolve(headers("Bearer t1")))?.tenantId, "ten_a");
});

test("a service assertion carries the call context to the service it is addressed to", async () => {
  const identity = ServiceAssertions.development("identity");
  const tenancy = ServiceAssertions.development("tenancy");
  const token = await identity.sign({ requestId: "req_1", tenantId: "ten_a", clientIp: "10.1.2.3", principal: { id: "usr_1", kind: "user", tenantId: "ten_a", permissions: new Set(["p"]), authTime: 1_700_000_000 } }, "tenancy");
  const verified = await tenancy.verify(token);
  assert.equal(verified.service, "identity");
  assert.equal(verified.context.tenantId, "ten_a");
  assert.equal(verified.context.clientIp, "10.1.2.3");
  assert.equal(verified.context.principal?.id, "usr_1");
  assert.equal(verified.context.principal?.authTime, 1_700_000_000);
  assert.equal(verified.context.principal?.viaService, "identity");
});

test("a service assertion carries the principal's roles, so the callee's events name them", async () => {
  const identity = ServiceAssertions.development("identity");
  const tenancy = ServiceAssertions.development("tenancy");
  const principal = { id: "usr_1", kind: "user" as const, tenantId: "ten_a", permissions: new Set(["p"]), roles: ["system:admin"] };
  assert.deepEqual((await tenancy.verify(await identity.sign({ requestId: "r", tenantId: "ten_a", principal }, "tenancy"))).context.principal?.roles, ["system:admin"]);
  const none = await tenancy.verify(await identity.sign({ requestId: "r", tenantId: "ten_a", principal: { ...principal, roles: [] } }, "tenancy"));
  assert.equal(none.context.principal?.roles, undefined);
});

test("an assertion addressed to another service, or signed with another service's key, is refused", async () => {
  const identity = ServiceAssertions.development("identity");
  const forTenancy = await identity.sign({ requestId: "req_1", tenantId: "ten_a" }, "tenancy");
  await assert.rejects(ServiceAssertions.development("keys").verify(forTenancy), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  // A key claiming to be identity's, but not identity's: its signature does not verify.
  const impostor = new ServiceAssertions(new MeshKeys({ service: "identity", seed: Buffer.alloc(32, 7) }));
  await assert.rejects(ServiceAssertions.development("tenancy").verify(await impostor.sign({ requestId: "req_2" }, "tenancy")), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  // A production mesh trusts only the services it lists.
  const seed = randomBytes(32);
  const listed = new MeshKeys({ service: "tenancy", seed, publicKeys: { identity: rawPublicKey(MeshKeys.development("identity").privateKey) } });
  const strict = new ServiceAssertions(listed);
  assert.equal((await strict.verify(forTenancy)).service, "identity");
  await assert.rejects(strict.verify(await ServiceAssertions.development("audit").sign({ requestId: "r" }, "tenancy")), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
});

test("a tenant's credential never becomes platform scope downstream, and only granted services act in platform scope", async () => {
  const tenancy = ServiceAssertions.development("tenancy");
  const identity = ServiceAssertions.development("identity");
  const user = { id: "usr_1", kind: "user" as const, tenantId: "ten_a", permissions: new Set(["p"]) };
  const asUser = await tenancy.verify(await identity.sign({ requestId: "r1", tenantId: "ten_a", principal: user, platformReason: "sneaky" }, "tenancy"));
  assert.equal(asUser.context.platformReason, undefined);
  assert.equal(asUser.context.tenantId, "ten_a");
  // identity acting as itself outside any tenant holds no platform grant: the callee sees an anonymous call.
  const platformIdentity = await runAsService("identity", undefined, () => identity.sign(currentContext(), "tenancy"));
  assert.equal((await tenancy.verify(platformIdentity)).context.principal, undefined);
  // compliance holds the grant.
  const compliance = ServiceAssertions.development("compliance");
  const platformCompliance = await runAsService("compliance", undefined, () => compliance.sign(currentContext(), "tenancy"));
  assert.equal((await tenancy.verify(platformCompliance)).context.principal?.id, "svc_compliance");
  // A service cannot claim to be another service's principal.
  const claimed = await identity.sign({ requestId: "r2", principal: { id: "svc_compliance", kind: "service", permissions: new Set(["*"]) } }, "tenancy");
  assert.equal((await tenancy.verify(claimed)).context.principal, undefined);
});

test("configuration names a malformed variable without echoing its value", () => {
  assert.throws(() => loadConfig("tenancy", { PORT: "abc" }), (e: unknown) => e instanceof ConfigError && /PORT/.test(e.message) && !/abc/.test(e.message));
  assert.throws(() => loadConfig("tenancy", { NODE_ENV: "production" }), (e: unknown) => e instanceof ConfigError && /BULWARK_BOOTSTRAP_TOKEN/.test(e.message));
  assert.throws(() => loadConfig("tenancy", { NODE_ENV: "production", BULWARK_BOOTSTRAP_TOKEN: "a-bootstrap-token-of-enough-length" }), (e: unknown) => e instanceof ConfigError && /BULWARK_SERVICE_KEY/.test(e.message));
  assert.throws(() => loadConfig("tenancy", { BULWARK_SERVICE_PUBLIC_KEYS: "identity=short" }), (e: unknown) => e instanceof ConfigError && /BULWARK_SERVICE_PUBLIC_KEYS/.test(e.message));
  assert.equal(loadConfig("tenancy", {}).PORT, 50051);
});

test("PUBLIC_BASE_URL is an http(s) URL without query or fragment, kept without trailing slashes", () => {
  assert.equal(loadConfig("identity", {}).PUBLIC_BASE_URL, "http://localhost:3000");
  assert.equal(loadConfig("identity", { PUBLIC_BASE_URL: "https://app.example.test/console//" }).PUBLIC_BASE_URL, "https://app.example.test/console");
  for (const bad of ["app.example.test", "ftp://app.example.test", "https://app.example.test/?next=x", "https://app.example.test/#x"]) {
    assert.throws(() => loadConfig("identity", { PUBLIC_BASE_URL: bad }), (e: unknown) => e instanceof ConfigError && /PUBLIC_BASE_URL/.test(e.message), bad);
  }
});

test("a call relayed for an anonymous caller stays anonymous; a service acting on its own carries its principal", async () => {
  const a = ServiceAssertions.development("identity");
  const callee = ServiceAssertions.development("tenancy");
  const anonymous = await callee.verify(await a.sign({ requestId: "req_2" }, "tenancy"));
  assert.equal(anonymous.context.principal, undefined);
  const own = await runAsService("identity", "ten_a", () => a.sign(currentContext(), "tenancy"));
  const verified = await callee.verify(own);
  assert.equal(verified.context.principal?.id, "svc_identity");
  assert.equal(verified.context.principal?.kind, "service");
  assert.equal(verified.context.tenantId, "ten_a");
});

test("a retired bootstrap token is refused like any unknown credential", async () => {
  let retired = false;
  const r = new BootstrapCredentialResolver("a-bootstrap-token-of-enough-length", () => retired);
  assert.equal((await resolvePrincipal([r], headers("Bearer a-bootstrap-token-of-enough-length")))?.kind, "bootstrap");
  retired = true;
  await assert.rejects(resolvePrincipal([r], headers("Bearer a-bootstrap-token-of-enough-length")), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
});
