import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { CreateTenantRequestSchema, health, Region, UpdateSecurityPolicyRequestSchema, ListTenantsRequestSchema } from "@bulwark/contracts";
import { isCidr, validateMessage } from "../src/index.js";

function violation(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    return err.rawMessage;
  }
  assert.fail("expected INVALID_ARGUMENT");
}

test("a valid CreateTenant request passes", () => {
  validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug: "acme-eu", displayName: "Acme", region: Region.EU }));
});

test("a missing required field is named", () => {
  assert.match(violation(() => validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { displayName: "Acme", region: Region.EU }))), /^slug: is required/);
});

test("a slug with upper case or double hyphens is refused", () => {
  for (const slug of ["Acme", "ac--me", "-acme", "acme-", "ac_me"]) {
    assert.match(violation(() => validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug, displayName: "A", region: Region.EU }))), /^slug:/, slug);
  }
});

test("an undefined enum number is refused", () => {
  assert.match(violation(() => validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug: "acme", displayName: "A", region: 42 as Region }))), /^region: 42 is not a defined value/);
});

test("lengths count characters, not bytes", () => {
  validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug: "acme", displayName: "é".repeat(200), region: Region.EU }));
  assert.match(violation(() => validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug: "acme", displayName: "é".repeat(201), region: Region.EU }))), /^display_name: must be at most 200/);
});

test("nested fields are named by their path", () => {
  const req = create(UpdateSecurityPolicyRequestSchema, {
    tenantId: "ten_x",
    policy: { ipAllowlist: ["10.0.0.0/8", "not-a-cidr"] },
    updateMask: { paths: ["ip_allowlist"] },
  });
  assert.match(violation(() => validateMessage(UpdateSecurityPolicyRequestSchema, req)), /^policy\.ip_allowlist\[1\]: must be a CIDR block/);
});

test("durations outside their bounds are refused", () => {
  const req = create(UpdateSecurityPolicyRequestSchema, {
    tenantId: "ten_x",
    policy: { accessTokenLifetime: { seconds: 10n } },
    updateMask: { paths: ["access_token_lifetime"] },
  });
  assert.match(violation(() => validateMessage(UpdateSecurityPolicyRequestSchema, req)), /^policy\.access_token_lifetime: must be at least 300s/);
});

test("an empty update mask is refused", () => {
  const req = create(UpdateSecurityPolicyRequestSchema, { tenantId: "ten_x", policy: {}, updateMask: { paths: [] } });
  assert.match(violation(() => validateMessage(UpdateSecurityPolicyRequestSchema, req)), /^update_mask: must name at least one field/);
});

test("integer bounds hold", () => {
  assert.match(violation(() => validateMessage(ListTenantsRequestSchema, create(ListTenantsRequestSchema, { pageSize: 501 }))), /^page_size: must be at most 500/);
  assert.match(violation(() => validateMessage(ListTenantsRequestSchema, create(ListTenantsRequestSchema, { pageSize: -1 }))), /^page_size: must be at least 0/);
});

test("CIDR blocks of both families are recognised", () => {
  for (const ok of ["10.0.0.0/8", "192.168.1.1/32", "2001:db8::/32", "::/0"]) assert.ok(isCidr(ok), ok);
  for (const bad of ["10.0.0.0", "10.0.0.0/33", "2001:db8::/129", "x/8", "10.0.0.0/08a"]) assert.ok(!isCidr(bad), bad);
});

test("a NUL character in any string is refused, naming the field, nested and repeated ones included", () => {
  assert.match(violation(() => validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug: "acme", displayName: "Ac\0me", region: Region.EU }))), /^display_name: must not contain NUL/);
  assert.match(
    violation(() => validateMessage(UpdateSecurityPolicyRequestSchema, create(UpdateSecurityPolicyRequestSchema, { tenantId: "ten_1", policy: { ipAllowlist: ["10.0.0.0/8", "10.0.0.0/8\0"] }, updateMask: { paths: ["ip_allowlist"] } }))),
    /^policy\.ip_allowlist\[1\]: must not contain NUL/,
  );
});

test("map keys and values are checked too", () => {
  const ok = create(health.HealthListResponseSchema, { statuses: { "a.B": { status: 1 } } });
  validateMessage(health.HealthListResponseSchema, ok);
  assert.match(violation(() => validateMessage(health.HealthListResponseSchema, create(health.HealthListResponseSchema, { statuses: { "a\0b": { status: 1 } } }))), /^statuses key: must not contain NUL/);
});

test("a lone surrogate (not encodable as UTF-8) is refused", () => {
  assert.match(violation(() => validateMessage(CreateTenantRequestSchema, create(CreateTenantRequestSchema, { slug: "acme", displayName: "bad \ud800", region: Region.EU }))), /^display_name: is not valid UTF-8/);
});
