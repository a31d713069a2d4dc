/**
 * When a service another one depends on fails, callers learn which
 * dependency failed and nothing about the network: UNAVAILABLE naming the
 * service, never an address, also when the connection breaks mid-call. With
 * several replicas listed (`TENANCY_URL=a,b`), a side-effect-free call that
 * cannot reach one is answered by the next.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, startTestService, type Started } from "../support/harness.js";
import { anonymousAuth, createUser, signIn, tenantWithSlug } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";
import { freePort } from "./support-e2e.js";

/** A TCP server that accepts every connection and resets it at once: a replica dying mid-call. */
async function resettingServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.once("data", () => s.resetAndDestroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

describe("dependency failures reach callers as UNAVAILABLE naming the dependency", () => {
  let tenancy: Started;
  const started: Started[] = [];
  let resetting: Awaited<ReturnType<typeof resettingServer>>;
  let deadUrl = "";

  before(async () => {
    tenancy = await startTestService(tenancyModule);
    resetting = await resettingServer();
    deadUrl = `http://127.0.0.1:${await freePort()}`;
  });

  after(async () => {
    for (const s of started) await s.stop();
    await tenancy?.stop();
    await resetting?.close();
  });

  async function identityWith(tenancyUrl: string): Promise<IdentityMesh> {
    const identity = await startTestService(identityModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancyUrl } });
    started.push(identity);
    return { tenancy, identity, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
  }

  async function refusal(call: Promise<unknown>): Promise<ConnectError> {
    try {
      await call;
    } catch (err) {
      return ConnectError.from(err);
    }
    assert.fail("the call succeeded");
  }

  test("tenancy down: sign-in answers UNAVAILABLE naming tenancy, without an address", async () => {
    const mesh = await identityWith(deadUrl);
    const tenant = await tenantWithSlug(mesh);
    const user = await createUser(mesh, tenant);
    const err = await refusal(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" }));
    assert.equal(err.code, Code.Unavailable);
    assert.match(err.rawMessage, /tenancy is unavailable/);
    assert.doesNotMatch(err.rawMessage, /127\.0\.0\.1|ECONN|:\d{2,5}/);
  });

  test("a tenancy replica resetting connections mid-call is UNAVAILABLE, not ABORTED", async () => {
    const mesh = await identityWith(resetting.url);
    const tenant = await tenantWithSlug(mesh);
    const user = await createUser(mesh, tenant);
    const err = await refusal(anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" }));
    assert.equal(err.code, Code.Unavailable);
    assert.doesNotMatch(err.rawMessage, /127\.0\.0\.1|ECONN|:\d{2,5}/);
  });

  test("with a dead and a live replica listed, sign-in is answered by the live one", async () => {
    const mesh = await identityWith(`${deadUrl},${resetting.url},${tenancy.baseUrl}`);
    const tenant = await tenantWithSlug(mesh);
    const user = await createUser(mesh, tenant);
    for (let i = 0; i < 3; i++) assert.ok((await signIn(mesh, user)).accessToken !== "");
  });
});
