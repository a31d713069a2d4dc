/**
 * Contract of bulwark.identity.v1.RoleService/GetUserPermissions, which
 * services holding credentials for a user (keys, for API keys) call to
 * learn what the user holds now.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { systemRole } from "@bulwark/core";
import { refusedWith } from "./support-assert.js";
import { activeUser, newTenant, operatorIn, principalOf, startIdentityMesh, type IdentityMesh } from "./support-identity.js";

describe("RoleService.GetUserPermissions", () => {
  let mesh: IdentityMesh;
  let tenantId: string;
  before(async () => {
    mesh = await startIdentityMesh();
    tenantId = await newTenant(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  test("returns an active user's current permissions and an epoch that grows when they shrink", async () => {
    const user = await activeUser(mesh, tenantId, ["system:developer", "system:billing"]);
    const ops = operatorIn(mesh, tenantId);
    const first = await ops.roles.getUserPermissions({ userId: user.id });
    assert.equal(first.active, true);
    assert.deepEqual(first.permissions, [...new Set([...systemRole("system:developer")!.permissions, ...systemRole("system:billing")!.permissions])].sort());
    await ops.roles.revokeRole({ userId: user.id, roleId: "system:billing" });
    const second = await ops.roles.getUserPermissions({ userId: user.id });
    assert.deepEqual(second.permissions, [...systemRole("system:developer")!.permissions]);
    assert.ok(second.permissionEpoch > first.permissionEpoch);
  });

  test("a suspended user holds nothing", async () => {
    const user = await activeUser(mesh, tenantId, ["system:developer"]);
    const ops = operatorIn(mesh, tenantId);
    await ops.users.suspendUser({ userId: user.id, reason: "test" });
    const r = await ops.roles.getUserPermissions({ userId: user.id });
    assert.equal(r.active, false);
    assert.deepEqual(r.permissions, []);
  });

  test("refuses unknown and other tenants' users, malformed ids, callers without identity.permissions.read and anonymous callers", async () => {
    const ops = operatorIn(mesh, tenantId);
    await refusedWith(ops.roles.getUserPermissions({ userId: "usr_nobody" }), Code.NotFound);
    const elsewhere = await activeUser(mesh, await newTenant(mesh), ["system:member"]);
    await refusedWith(ops.roles.getUserPermissions({ userId: elsewhere.id }), Code.NotFound);
    await refusedWith(ops.roles.getUserPermissions({ userId: "key_1" }), Code.InvalidArgument, "user_id");
    await refusedWith(principalOf(mesh, tenantId, ["identity.permissions.check"]).roles.getUserPermissions({ userId: elsewhere.id }), Code.PermissionDenied);
    const { clientFor } = await import("../support/harness.js");
    const { RoleService } = await import("@bulwark/contracts");
    await refusedWith(clientFor(RoleService, mesh.identity.baseUrl).getUserPermissions({ userId: elsewhere.id }), Code.Unauthenticated);
  });
});
