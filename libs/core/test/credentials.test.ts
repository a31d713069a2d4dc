import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { BootstrapCredentialResolver, currentContext, loadConfig, ConfigError, resolvePrincipal, runAsService, ServiceAssertions, StaticTokenResolver } from "../src/index.js";

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

test("a service assertion carries the call context and is refused when forged", async () => {
  const a = new ServiceAssertions("service-secret-0123456789abcdef-0123", "identity");
  const token = await a.sign({ requestId: "req_1", tenantId: "ten_a", principal: { id: "usr_1", kind: "user", tenantId: "ten_a", permissions: new Set(["p"]) } });
  const verified = await a.verify(token);
  assert.equal(verified.service, "identity");
  assert.equal(verified.context.tenantId, "ten_a");
  assert.equal(verified.context.principal?.id, "usr_1");
  assert.equal(verified.context.principal?.viaService, "identity");
  const other = new ServiceAssertions("another-secret-0123456789abcdef-0123", "edge");
  await assert.rejects(other.verify(token), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
});

test("configuration names a malformed variable without echoing its value", () => {
  assert.throws(() => loadConfig("tenancy", { PORT: "abc" }), (e: unknown) => e instanceof ConfigError && /PORT/.test(e.message) && !/abc/.test(e.message));
  assert.throws(() => loadConfig("tenancy", { NODE_ENV: "production" }), (e: unknown) => e instanceof ConfigError && /BULWARK_BOOTSTRAP_TOKEN/.test(e.message));
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
  const a = new ServiceAssertions("service-secret-0123456789abcdef-0123", "identity");
  const anonymous = await a.verify(await a.sign({ requestId: "req_2" }));
  assert.equal(anonymous.context.principal, undefined);
  const own = await runAsService("identity", "ten_a", () => a.sign(currentContext()));
  const verified = await a.verify(own);
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
