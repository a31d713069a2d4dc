/**
 * The methods anyone may call without a credential are rate limited per
 * client address and method (PUBLIC_RATE_LIMIT_PER_MINUTE), in every
 * service's pipeline; health, reflection and calls relayed by another
 * Bulwark service are not. Clients bind their own loopback addresses.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { DiagnosticsService, health, TenancyService } from "@bulwark/contracts";
import { serviceAssertionHeader, ServiceAssertions } from "@bulwark/core";
import { clientFrom } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { tenantWithSlug, type TestTenant } from "./support-auth.js";

const limit = 5;
let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mesh = await startIdentityMesh({ PUBLIC_RATE_LIMIT_PER_MINUTE: String(limit) });
  tenant = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
});

const tenancyFrom = (address: string, protocol: "grpc" | "connect" | "grpcweb" = "grpc", headers: Record<string, string> = {}) => clientFrom(TenancyService, mesh.tenancy.baseUrl, address, protocol, headers);

describe("public rate limit", () => {
  test("a client past the limit of a public method gets RESOURCE_EXHAUSTED with a retry hint, whatever the protocol", async () => {
    const address = "127.0.0.20";
    const protocols = ["grpc", "connect", "grpcweb", "grpc", "connect"] as const;
    for (const protocol of protocols) assert.equal((await tenancyFrom(address, protocol).resolveTenant({ slug: tenant.slug })).tenantId, tenant.id);
    const err = await refusedWith(tenancyFrom(address, "grpcweb").resolveTenant({ slug: tenant.slug }), Code.ResourceExhausted, /retry in \d+ s/);
    assert.match(err.metadata.get("retry-after") ?? "", /^\d+$/);
    // A forged forwarding header from an untrusted peer does not make a new client.
    await refusedWith(tenancyFrom(address, "grpc", { "x-forwarded-for": "198.51.100.99" }).resolveTenant({ slug: tenant.slug }), Code.ResourceExhausted);
  });

  test("the limit is per client address and per method; health is exempt", async () => {
    const address = "127.0.0.21";
    for (let i = 0; i < limit; i++) await tenancyFrom(address).resolveTenant({ slug: tenant.slug });
    await refusedWith(tenancyFrom(address).resolveTenant({ slug: tenant.slug }), Code.ResourceExhausted);
    assert.equal((await tenancyFrom("127.0.0.22").resolveTenant({ slug: tenant.slug })).tenantId, tenant.id, "another address");
    const ping = await clientFrom(DiagnosticsService, mesh.tenancy.baseUrl, address).ping({ payload: new Uint8Array([1]) });
    assert.deepEqual([...ping.payload], [1], "another public method");
    for (let i = 0; i < limit * 2; i++) {
      const res = await clientFrom(health.Health, mesh.tenancy.baseUrl, address).check({ service: "" });
      assert.equal(res.status, health.HealthCheckResponse_ServingStatus.SERVING);
    }
  });

  test("calls relayed by another service under its assertion are not counted against that service's address", async () => {
    const assertions = ServiceAssertions.development("identity");
    for (let i = 0; i < limit * 2; i++) {
      // As identity relays an anonymous sign-in: a fresh assertion, no principal.
      const relayed = tenancyFrom("127.0.0.24", "grpc", { [serviceAssertionHeader]: await assertions.sign(undefined, "tenancy") });
      assert.equal((await relayed.resolveTenant({ slug: tenant.slug })).tenantId, tenant.id);
    }
  });
});
