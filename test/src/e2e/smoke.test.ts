import { test } from "node:test";
import assert from "node:assert/strict";
import { Region, TenancyService } from "@bulwark/contracts";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, startTestService, uniqueSlug } from "../support/harness.js";

test("an operator creates a tenant and anyone resolves its slug", async () => {
  const svc = await startTestService(tenancyModule);
  try {
    const ops = clientFor(TenancyService, svc.baseUrl, bootstrapToken);
    const slug = uniqueSlug();
    const { tenant } = await ops.createTenant({ slug, displayName: "Acme", region: Region.EU });
    const anon = clientFor(TenancyService, svc.baseUrl, undefined, "connect");
    const resolved = await anon.resolveTenant({ slug });
    assert.equal(resolved.tenantId, tenant?.id);
    assert.equal(resolved.active, true);
  } finally {
    await svc.stop();
  }
});
