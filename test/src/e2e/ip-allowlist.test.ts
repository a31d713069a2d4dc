/**
 * A tenant's `ip_allowlist` is enforced mesh-wide, for the tenant's own
 * principals: once the policy names address blocks, a call from outside them
 * is refused by every service (each reads the allowlist from the signed
 * tenant-status bucket), a call from inside is admitted, clearing the list
 * lifts it, and platform operators are not bound by a tenant's list.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Region, TenancyService, UserService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, clientFrom, eventually, startMesh, uniqueSlug, type TestMesh } from "../support/harness.js";
import { codeOf } from "./support-e2e.js";
import { anonymousAuth, createUser, signIn } from "../contract/support-auth.js";

describe("the tenant's IP allowlist is enforced by every service", () => {
  let mesh: TestMesh;

  before(async () => {
    mesh = await startMesh({ tenancy: tenancyModule, identity: identityModule });
  });

  after(async () => {
    await mesh?.stop();
  });

  test("calls from outside the allowlist are refused on tenancy and identity; from inside admitted; clearing it lifts it", async () => {
    const ops = clientFor(TenancyService, mesh.tenancy.baseUrl, bootstrapToken);
    const tenantId = (await ops.createTenant({ slug: uniqueSlug("ip"), displayName: "Allowlisted", region: Region.EU })).tenant!.id;
    const principal = { id: "usr_ip", kind: "user" as const, tenantId, permissions: new Set(["tenancy.tenants.read", "identity.users.list"]) };
    const tenancyToken = mesh.tenancy.issueToken(principal);
    const identityToken = mesh.identity.issueToken(principal);
    const from = (address: string) => ({
      tenancy: clientFrom(TenancyService, mesh.tenancy.baseUrl, address, "grpc", { authorization: `Bearer ${tenancyToken}` }),
      identity: clientFrom(UserService, mesh.identity.baseUrl, address, "connect", { authorization: `Bearer ${identityToken}` }),
    });
    const inside = from("127.0.0.2");
    const outside = from("127.0.0.9");
    assert.equal(await codeOf(outside.tenancy.getTenant({ tenantId })), "OK", "no allowlist: every address");

    const setAllowlist = (cidrs: string[]) =>
      ops.updateSecurityPolicy({ tenantId, policy: { ipAllowlist: cidrs }, updateMask: create(FieldMaskSchema, { paths: ["ip_allowlist"] }) });
    await setAllowlist(["127.0.0.0/30", "10.0.0.0/8"]);
    await eventually(async () => (await codeOf(outside.tenancy.getTenant({ tenantId }))) === "PermissionDenied", 5_000, 50);
    await eventually(async () => (await codeOf(outside.identity.listUsers({}))) === "PermissionDenied", 5_000, 50);
    assert.equal(await codeOf(inside.tenancy.getTenant({ tenantId })), "OK");
    assert.equal(await codeOf(inside.identity.listUsers({})), "OK");
    // The operator stands outside every tenant's list.
    assert.equal(await codeOf(clientFrom(TenancyService, mesh.tenancy.baseUrl, "127.0.0.9", "grpc", { authorization: `Bearer ${bootstrapToken}` }).getTenant({ tenantId })), "OK");

    await setAllowlist([]);
    await eventually(async () => (await codeOf(outside.tenancy.getTenant({ tenantId }))) === "OK", 5_000, 50);
    await eventually(async () => (await codeOf(outside.identity.listUsers({}))) === "OK", 5_000, 50);
  });

  test("sign-in and refresh are refused from outside the allowlist, even with the right password, and work from inside", async () => {
    const ops = clientFor(TenancyService, mesh.tenancy.baseUrl, bootstrapToken);
    const slug = uniqueSlug("ipsign");
    const tenantId = (await ops.createTenant({ slug, displayName: "Allowlisted sign-in", region: Region.EU })).tenant!.id;
    const idMesh = { tenancy: mesh.tenancy, identity: mesh.identity, tenancyOps: ops, stop: () => Promise.resolve() };
    const user = await createUser(idMesh, { id: tenantId, slug });
    const before = await signIn(idMesh, user, "laptop", anonymousAuth(idMesh, "10.9.9.9"));
    await ops.updateSecurityPolicy({ tenantId, policy: { ipAllowlist: ["192.0.2.0/24"] }, updateMask: create(FieldMaskSchema, { paths: ["ip_allowlist"] }) });
    const outside = anonymousAuth(idMesh, "10.9.9.9");
    await eventually(async () => (await codeOf(outside.signIn({ tenantSlug: slug, email: user.email, password: user.password, device: "laptop" }))) === "PermissionDenied", 5_000, 50);
    // A wrong password from outside says the same: no password oracle from there, and no failure counted.
    assert.equal(await codeOf(outside.signIn({ tenantSlug: slug, email: user.email, password: "wrong-password-123456", device: "laptop" })), "PermissionDenied");
    assert.equal(await codeOf(outside.refreshTokens({ refreshToken: before.refreshToken })), "PermissionDenied");
    const inside = anonymousAuth(idMesh, "192.0.2.7");
    const tokens = await signIn(idMesh, user, "laptop", inside);
    assert.ok(tokens.accessToken.length > 0);
    assert.equal(await codeOf(inside.refreshTokens({ refreshToken: tokens.refreshToken })), "OK");
  });
});
