/**
 * The client address every service records and counts by: the connection's
 * peer on every protocol, forwarding headers only from a trusted proxy
 * (TRUSTED_PROXIES). Clients bind distinct loopback addresses, so each is a
 * direct client with an address of its own; 127.0.0.9 plays the proxy.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService } from "@bulwark/contracts";
import { clientFrom, eventually, type Protocol } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { identityQuery, startIdentityMesh, uniqueEmail, type IdentityMesh } from "./support-identity.js";
import { createUser, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";

const proxy = "127.0.0.9";
let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mesh = await startIdentityMesh({ TRUSTED_PROXIES: `${proxy}/32` });
  tenant = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
});

const auth = (from: string, protocol: Protocol = "grpc", headers: Record<string, string> = {}) => clientFrom(AuthService, mesh.identity.baseUrl, from, protocol, headers);

async function sessionAddress(user: TestUser, from: string, protocol: Protocol, headers: Record<string, string> = {}): Promise<string> {
  const res = await auth(from, protocol, headers).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" });
  assert.equal(res.result.case, "tokens");
  const [row] = await identityQuery<{ ip_address: string }>(mesh, "select ip_address from $schema.sessions where id = $1", [res.result.value.sessionId]);
  return row!.ip_address;
}

describe("client address", () => {
  test("a session records the direct client's own address on every protocol", async () => {
    const user = await createUser(mesh, tenant);
    assert.equal(await sessionAddress(user, "127.0.0.4", "grpc"), "127.0.0.4");
    assert.equal(await sessionAddress(user, "127.0.0.5", "connect"), "127.0.0.5");
    assert.equal(await sessionAddress(user, "127.0.0.6", "grpcweb"), "127.0.0.6");
  });

  test("a forged X-Forwarded-For from a client that is not a trusted proxy is ignored", async () => {
    const user = await createUser(mesh, tenant);
    assert.equal(await sessionAddress(user, "127.0.0.7", "grpc", { "x-forwarded-for": "198.51.100.23" }), "127.0.0.7");
    assert.equal(await sessionAddress(user, "127.0.0.7", "connect", { "x-real-ip": "198.51.100.23", forwarded: "for=198.51.100.23" }), "127.0.0.7");
  });

  test("a trusted proxy's X-Forwarded-For is honoured: the right-most address that is not a trusted proxy", async () => {
    const user = await createUser(mesh, tenant);
    // A client forged the first entry; the proxy appended the peer it saw.
    assert.equal(await sessionAddress(user, proxy, "grpc", { "x-forwarded-for": "10.6.6.6, 203.0.113.7" }), "203.0.113.7");
    assert.equal(await sessionAddress(user, proxy, "grpcweb", { "x-forwarded-for": "::ffff:203.0.113.8" }), "203.0.113.8");
    assert.equal(await sessionAddress(user, proxy, "connect", { forwarded: 'for="[2001:db8::17]:4711"' }), "2001:db8::17");
  });

  test("100 wrong passwords from one direct client are counted under its own address, so another direct client is not locked out", async () => {
    const attacker = "127.0.0.2";
    const bystander = "127.0.0.3";
    const victim = await createUser(mesh, tenant);
    const guesses = Array.from({ length: 100 }, () => uniqueEmail("nobody"));
    for (let i = 0; i < guesses.length; i += 5) {
      await Promise.all(
        guesses.slice(i, i + 5).map((email) => refusedWith(auth(attacker).signIn({ tenantSlug: tenant.slug, email, password: "wrong password, wrong user", device: "bot" }), Code.Unauthenticated)),
      );
    }
    // The locks are short and back off, so what is checked is where the
    // failures were counted (timing-free), then that the bystander gets in.
    const counters = async () => new Map((await identityQuery<{ key: string; failures: number }>(mesh, "select key, failures from $schema.sign_in_throttles where key like 'ip:%'")).map((r) => [r.key, Number(r.failures)]));
    // A failure is counted just after its answer has gone: wait for the last ones.
    await eventually(async () => ((await counters()).get(`ip:${attacker}`) ?? 0) >= 100, 5_000).catch(() => undefined);
    const before = await counters();
    assert.ok((before.get(`ip:${attacker}`) ?? 0) >= 100, `the attacker's address counted ${before.get(`ip:${attacker}`)}`);
    assert.equal(before.get("ip:unknown"), undefined, "direct clients share no counter");
    assert.equal(before.get(`ip:${bystander}`), undefined);
    // A forged header from an untrusted peer is counted (or refused) under the peer, never under the forged address.
    const forged = await auth(attacker, "grpc", { "x-forwarded-for": "192.0.2.44" })
      .signIn({ tenantSlug: tenant.slug, email: uniqueEmail("nobody"), password: "wrong again", device: "bot" })
      .then(
        () => "ok",
        (e: unknown) => Code[ConnectError.from(e).code],
      );
    assert.ok(forged === "ResourceExhausted" || forged === "Unauthenticated", forged);
    assert.equal((await counters()).get("ip:192.0.2.44"), undefined);
    const res = await auth(bystander).signIn({ tenantSlug: tenant.slug, email: victim.email, password: victim.password, device: "phone" });
    assert.equal(res.result.case, "tokens");
  });
});
