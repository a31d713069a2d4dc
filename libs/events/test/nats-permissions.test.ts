import { test } from "node:test";
import assert from "node:assert/strict";
import { keysUsageCapBucket, natsPermissionsOf, tenantStatusBucket } from "../src/index.js";

test("keys alone may write its usage-cap bucket, tenancy alone the tenant-status bucket", () => {
  const keys = natsPermissionsOf("bulwark", "keys").publish.allow;
  const identity = natsPermissionsOf("bulwark", "identity").publish.allow;
  const tenancy = natsPermissionsOf("bulwark", "tenancy").publish.allow;
  const usage = `$KV.${keysUsageCapBucket("bulwark")}.>`;
  const status = `$KV.${tenantStatusBucket("bulwark")}.>`;
  assert.ok(keys.includes(usage) && keys.includes(`$JS.API.STREAM.CREATE.KV_${keysUsageCapBucket("bulwark")}`));
  assert.ok(!identity.includes(usage) && !tenancy.includes(usage));
  assert.ok(tenancy.includes(status) && !keys.includes(status) && !identity.includes(status));
});
