/**
 * The contract of bulwark.identity.v1.RoleService as its callers rely on
 * it: the permission catalogue, system and custom roles, assignments, the
 * Owner safeguards (assigning Owner needs identity.roles.assign_owner; a
 * tenant never loses its last active owner, even to concurrent requests),
 * ownership transfer and permission checks — every RPC's success case and
 * each error code its proto comment documents, against real servers.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { RoleAssignmentChangedSchema, RoleChangedSchema, UserState, type User } from "@bulwark/contracts";
import { permissionCatalogue, systemRole } from "@bulwark/core";
import { bootstrapToken } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { anonymousAuth, claimsOf, createUser, signIn, tenantWithSlug } from "./support-auth.js";
import {
  activeUser,
  clientsWith,
  eventsOf,
  identityQuery,
  invite,
  newTenant,
  operatorIn,
  principalOf,
  signedIn,
  startIdentityMesh,
  type IdentityClients,
  type IdentityMesh,
} from "./support-identity.js";

/** An Admin: may manage and assign roles (not Owner), holds what it hands out. */
const roleAdmin = systemRole("system:admin")!.permissions;
const missingUser = "usr_0000000000000000000000000";
const missingRole = "rol_0000000000000000000000000";

let mesh: IdentityMesh;
let tenantA: string;
let tenantB: string;
let ownerA: User;
let userB: User;
/** Tenant A's role administrator (not allowed to give Owner), and a principal holding nothing. */
let adminA: IdentityClients;
let nobodyA: IdentityClients;
let roleOfB: string;

before(async () => {
  mesh = await startIdentityMesh();
  [tenantA, tenantB] = await Promise.all([newTenant(mesh), newTenant(mesh)]);
  ownerA = await activeUser(mesh, tenantA, ["system:owner"]);
  userB = await activeUser(mesh, tenantB);
  adminA = principalOf(mesh, tenantA, roleAdmin);
  nobodyA = principalOf(mesh, tenantA, []);
  roleOfB = (await operatorIn(mesh, tenantB).roles.createRole({ name: "Auditor", permissions: ["audit.records.read"] })).role!.id;
});

after(async () => {
  await mesh?.stop();
});

/** A tenant with one active owner, and the operator inside it. */
async function ownedTenant(): Promise<{ tenant: string; owner: User; ops: IdentityClients }> {
  const tenant = await newTenant(mesh);
  return { tenant, owner: await activeUser(mesh, tenant, ["system:owner"]), ops: operatorIn(mesh, tenant) };
}

let roleCounter = 0;
function roleName(label = "Role"): string {
  return `${label} ${++roleCounter} ${Date.now().toString(36)}`;
}

describe("ListPermissions", () => {
  test("ListPermissions returns the whole catalogue sorted by name, each described", async () => {
    const { permissions } = await principalOf(mesh, tenantA, ["identity.roles.read"]).roles.listPermissions({});
    assert.ok(permissions.length > 50);
    assert.deepEqual(permissions.map((p) => p.name), permissionCatalogue.map((p) => p.name));
    assert.deepEqual(permissions.map((p) => p.name), [...permissions.map((p) => p.name)].sort());
    assert.ok(permissions.every((p) => p.description !== ""));
    assert.ok(permissions.some((p) => p.name === "identity.roles.assign_owner"));
  });

  test("ListPermissions refuses a caller without identity.roles.read with PERMISSION_DENIED and no credential with UNAUTHENTICATED", async () => {
    await refusedWith(nobodyA.roles.listPermissions({}), Code.PermissionDenied, "identity.roles.read");
    await refusedWith(clientsWith(mesh, undefined).roles.listPermissions({}), Code.Unauthenticated);
  });
});

describe("ListRoles", () => {
  test("ListRoles returns the eight system roles first, then the tenant's custom roles by name, and no other tenant's", async () => {
    const { tenant, ops } = await ownedTenant();
    await ops.roles.createRole({ name: "Zeta", permissions: ["audit.records.read"] });
    await ops.roles.createRole({ name: "Alpha", description: "first", permissions: ["keys.api_keys.read"] });
    const { roles } = await principalOf(mesh, tenant, ["identity.roles.read"]).roles.listRoles({});
    assert.deepEqual(roles.map((r) => r.name), ["Owner", "Admin", "Team Lead", "Project Manager", "Member", "Developer", "Monitor", "Billing", "Alpha", "Zeta"]);
    const owner = roles[0]!;
    assert.equal(owner.id, "system:owner");
    assert.ok(owner.system && owner.requiresMfa);
    assert.equal(owner.tenantId, "");
    assert.equal(owner.permissions.length, permissionCatalogue.length);
    assert.ok(roles[1]!.requiresMfa && !roles[1]!.permissions.includes("identity.roles.assign_owner") && !roles[1]!.permissions.includes("tenancy.tenants.close"));
    assert.ok(roles.slice(2, 8).every((r) => r.system && !r.requiresMfa));
    const alpha = roles[8]!;
    assert.match(alpha.id, /^rol_/);
    assert.equal(alpha.tenantId, tenant);
    assert.equal(alpha.description, "first");
    assert.ok(!alpha.system);
    assert.ok(!roles.some((r) => r.id === roleOfB));
  });

  test("ListRoles refuses a caller without identity.roles.read with PERMISSION_DENIED and an operator naming no tenant with FAILED_PRECONDITION", async () => {
    await refusedWith(nobodyA.roles.listRoles({}), Code.PermissionDenied);
    await refusedWith(clientsWith(mesh, bootstrapToken).roles.listRoles({}), Code.FailedPrecondition, "no tenant in scope");
  });
});

describe("CreateRole", () => {
  test("CreateRole creates a custom role from catalogue permissions and records role.created", async () => {
    const name = roleName("Exporter");
    const { role } = await adminA.roles.createRole({ name, description: "exports audit", permissions: ["audit.records.export", "audit.records.read"] });
    assert.ok(role !== undefined);
    assert.match(role.id, /^rol_[a-z0-9]+$/);
    assert.equal(role.tenantId, tenantA);
    assert.equal(role.name, name);
    assert.deepEqual(role.permissions, ["audit.records.export", "audit.records.read"]);
    assert.ok(!role.system && !role.requiresMfa);
    const event = (await eventsOf(mesh, tenantA)).find((e) => e.aggregateId === role.id);
    assert.equal(event?.type, "role.created");
    assert.deepEqual(fromBinary(RoleChangedSchema, event!.payload).role?.permissions, role.permissions);
  });

  test("CreateRole refuses a permission outside the catalogue with INVALID_ARGUMENT naming permissions[i]", async () => {
    await refusedWith(adminA.roles.createRole({ name: roleName(), permissions: ["audit.records.read", "audit.records.shred"] }), Code.InvalidArgument, "permissions[1]");
    await refusedWith(adminA.roles.createRole({ name: roleName(), permissions: ["*"] }), Code.InvalidArgument, "permissions[0]");
  });

  test("CreateRole refuses a missing name or no permissions with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(adminA.roles.createRole({ name: "", permissions: ["audit.records.read"] }), Code.InvalidArgument, "name");
    await refusedWith(adminA.roles.createRole({ name: "   ", permissions: ["audit.records.read"] }), Code.InvalidArgument, "name");
    await refusedWith(adminA.roles.createRole({ name: roleName(), permissions: [] }), Code.InvalidArgument, "permissions");
    await refusedWith(adminA.roles.createRole({ name: "x".repeat(65), permissions: ["audit.records.read"] }), Code.InvalidArgument, "name");
  });

  test("CreateRole refuses a name taken in the tenant, whatever its case, or a system role's name with ALREADY_EXISTS", async () => {
    const name = roleName("Taken");
    await adminA.roles.createRole({ name, permissions: ["audit.records.read"] });
    await refusedWith(adminA.roles.createRole({ name: name.toUpperCase(), permissions: ["audit.records.read"] }), Code.AlreadyExists);
    await refusedWith(adminA.roles.createRole({ name: "owner", permissions: ["audit.records.read"] }), Code.AlreadyExists);
  });

  test("CreateRole accepts a name another tenant uses", async () => {
    assert.equal((await adminA.roles.createRole({ name: "Auditor", permissions: ["audit.records.read"] })).role?.name, "Auditor");
  });

  test("CreateRole refuses a caller without identity.roles.manage with PERMISSION_DENIED", async () => {
    await refusedWith(principalOf(mesh, tenantA, ["identity.roles.read"]).roles.createRole({ name: roleName(), permissions: ["audit.records.read"] }), Code.PermissionDenied, "identity.roles.manage");
  });
});

describe("UpdateRole", () => {
  test("UpdateRole changes the fields named in update_mask and records role.updated", async () => {
    const { role } = await adminA.roles.createRole({ name: roleName("Before"), description: "old", permissions: ["audit.records.read"] });
    const name = roleName("After");
    const { role: updated } = await adminA.roles.updateRole({ roleId: role!.id, name, description: "ignored", permissions: ["keys.api_keys.list", "audit.records.read"], updateMask: { paths: ["name", "permissions"] } });
    assert.equal(updated?.name, name);
    assert.equal(updated?.description, "old", "a field outside the mask is kept");
    assert.deepEqual(updated?.permissions, ["audit.records.read", "keys.api_keys.list"]);
    const { role: described } = await adminA.roles.updateRole({ roleId: role!.id, description: "", updateMask: { paths: ["description"] } });
    assert.equal(described?.description, "");
    const types = (await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === role!.id).map((e) => e.type);
    assert.deepEqual(types, ["role.created", "role.updated", "role.updated"]);
  });

  test("UpdateRole refuses a system role with FAILED_PRECONDITION", async () => {
    await refusedWith(adminA.roles.updateRole({ roleId: "system:member", name: "Everyone", updateMask: { paths: ["name"] } }), Code.FailedPrecondition, "system roles");
  });

  test("UpdateRole answers NOT_FOUND for a missing or another tenant's role", async () => {
    await refusedWith(adminA.roles.updateRole({ roleId: missingRole, name: "X", updateMask: { paths: ["name"] } }), Code.NotFound);
    await refusedWith(adminA.roles.updateRole({ roleId: roleOfB, name: "Hijacked", updateMask: { paths: ["name"] } }), Code.NotFound);
    await refusedWith(adminA.roles.updateRole({ roleId: "system:emperor", name: "X", updateMask: { paths: ["name"] } }), Code.NotFound);
  });

  test("UpdateRole refuses a taken name with ALREADY_EXISTS", async () => {
    const taken = roleName("Taken");
    await adminA.roles.createRole({ name: taken, permissions: ["audit.records.read"] });
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["audit.records.read"] });
    await refusedWith(adminA.roles.updateRole({ roleId: role!.id, name: taken, updateMask: { paths: ["name"] } }), Code.AlreadyExists);
  });

  test("UpdateRole refuses an unknown path, an unknown permission or an empty permission list with INVALID_ARGUMENT", async () => {
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["audit.records.read"] });
    await refusedWith(adminA.roles.updateRole({ roleId: role!.id, updateMask: { paths: ["system"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(adminA.roles.updateRole({ roleId: role!.id, permissions: ["nope.nope.nope"], updateMask: { paths: ["permissions"] } }), Code.InvalidArgument, "permissions[0]");
    await refusedWith(adminA.roles.updateRole({ roleId: role!.id, permissions: [], updateMask: { paths: ["permissions"] } }), Code.InvalidArgument, "permissions");
    await refusedWith(adminA.roles.updateRole({ roleId: role!.id, name: "X" }), Code.InvalidArgument, "update_mask");
  });

  test("UpdateRole refuses a caller without identity.roles.manage with PERMISSION_DENIED", async () => {
    await refusedWith(nobodyA.roles.updateRole({ roleId: missingRole, name: "X", updateMask: { paths: ["name"] } }), Code.PermissionDenied);
  });
});

describe("DeleteRole", () => {
  test("DeleteRole deletes a role nobody holds and records role.deleted", async () => {
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["audit.records.read"] });
    await adminA.roles.deleteRole({ roleId: role!.id });
    assert.ok(!(await adminA.roles.listRoles({})).roles.some((r) => r.id === role!.id));
    assert.equal((await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === role!.id).at(-1)?.type, "role.deleted");
    await refusedWith(adminA.roles.deleteRole({ roleId: role!.id }), Code.NotFound);
  });

  test("DeleteRole refuses a role that is still assigned with FAILED_PRECONDITION", async () => {
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["audit.records.read"] });
    const holder = await activeUser(mesh, tenantA);
    await adminA.roles.assignRole({ userId: holder.id, roleId: role!.id });
    await refusedWith(adminA.roles.deleteRole({ roleId: role!.id }), Code.FailedPrecondition, "still assigned");
    await adminA.roles.revokeRole({ userId: holder.id, roleId: role!.id });
    await adminA.roles.deleteRole({ roleId: role!.id });
  });

  test("DeleteRole refuses a system role with FAILED_PRECONDITION", async () => {
    await refusedWith(adminA.roles.deleteRole({ roleId: "system:owner" }), Code.FailedPrecondition);
  });

  test("DeleteRole answers NOT_FOUND for a missing or another tenant's role, and refuses a caller without identity.roles.manage", async () => {
    await refusedWith(adminA.roles.deleteRole({ roleId: missingRole }), Code.NotFound);
    await refusedWith(adminA.roles.deleteRole({ roleId: roleOfB }), Code.NotFound);
    await refusedWith(adminA.roles.deleteRole({ roleId: "" }), Code.InvalidArgument, "role_id");
    await refusedWith(nobodyA.roles.deleteRole({ roleId: missingRole }), Code.PermissionDenied);
  });
});

describe("AssignRole", () => {
  test("AssignRole gives a user a system or custom role, records role.assigned, and is idempotent", async () => {
    const user = await activeUser(mesh, tenantA);
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["audit.records.export"] });
    assert.deepEqual((await adminA.roles.assignRole({ userId: user.id, roleId: "system:developer" })).user?.roleIds, ["system:developer", "system:member"]);
    const { user: after } = await adminA.roles.assignRole({ userId: user.id, roleId: role!.id });
    assert.deepEqual(after?.roleIds, [role!.id, "system:developer", "system:member"].sort());
    assert.deepEqual((await adminA.roles.assignRole({ userId: user.id, roleId: role!.id })).user?.roleIds, after?.roleIds);
    const assigned = (await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === user.id && e.type === "role.assigned");
    assert.deepEqual(assigned.map((e) => fromBinary(RoleAssignmentChangedSchema, e.payload).roleId), ["system:developer", role!.id]);
    assert.equal((await adminA.roles.checkPermission({ userId: user.id, permission: "audit.records.export" })).allowed, true);
  });

  test("AssignRole gives Owner only to a caller who also holds identity.roles.assign_owner; PERMISSION_DENIED otherwise", async () => {
    const user = await activeUser(mesh, tenantA);
    await refusedWith(adminA.roles.assignRole({ userId: user.id, roleId: "system:owner" }), Code.PermissionDenied, "identity.roles.assign_owner");
    const owner = signedIn(mesh, ownerA);
    assert.ok((await owner.roles.assignRole({ userId: user.id, roleId: "system:owner" })).user?.roleIds.includes("system:owner"));
  });

  test("AssignRole refuses a role granting permissions the caller lacks: holding identity.roles.assign is no way to become Admin", async () => {
    // A Member's permissions too: nobody may act on a user more privileged than themselves.
    const lead = principalOf(mesh, tenantA, ["identity.roles.assign", ...systemRole("system:member")!.permissions]);
    const user = await activeUser(mesh, tenantA);
    await refusedWith(lead.roles.assignRole({ userId: user.id, roleId: "system:admin" }), Code.PermissionDenied, "missing");
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["identity.users.read"] });
    assert.ok((await lead.roles.assignRole({ userId: user.id, roleId: role!.id })).user?.roleIds.includes(role!.id));
  });

  test("AssignRole answers NOT_FOUND for a missing or another tenant's user or role", async () => {
    const user = await activeUser(mesh, tenantA);
    await refusedWith(adminA.roles.assignRole({ userId: missingUser, roleId: "system:member" }), Code.NotFound);
    await refusedWith(adminA.roles.assignRole({ userId: userB.id, roleId: "system:developer" }), Code.NotFound);
    await refusedWith(adminA.roles.assignRole({ userId: user.id, roleId: missingRole }), Code.NotFound);
    await refusedWith(adminA.roles.assignRole({ userId: user.id, roleId: roleOfB }), Code.NotFound);
    await refusedWith(adminA.roles.assignRole({ userId: user.id, roleId: "system:emperor" }), Code.NotFound);
  });

  test("AssignRole refuses malformed ids with INVALID_ARGUMENT and a caller without identity.roles.assign with PERMISSION_DENIED", async () => {
    await refusedWith(adminA.roles.assignRole({ userId: "bob", roleId: "system:member" }), Code.InvalidArgument, "user_id");
    await refusedWith(adminA.roles.assignRole({ userId: ownerA.id, roleId: "" }), Code.InvalidArgument, "role_id");
    await refusedWith(principalOf(mesh, tenantA, ["identity.roles.manage"]).roles.assignRole({ userId: ownerA.id, roleId: "system:member" }), Code.PermissionDenied, "identity.roles.assign");
  });
});

describe("RevokeRole", () => {
  test("RevokeRole takes a role away, records role.revoked, and outdates the user's live tokens (user.grants_reduced)", async () => {
    const user = await activeUser(mesh, tenantA, ["system:member", "system:monitor"]);
    const { user: after } = await adminA.roles.revokeRole({ userId: user.id, roleId: "system:monitor" });
    assert.deepEqual(after?.roleIds, ["system:member"]);
    assert.deepEqual((await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === user.id).slice(-2).map((e) => e.type), ["role.revoked", "user.grants_reduced"]);
    const [row] = await identityQuery<{ permission_epoch: number }>(mesh, "select permission_epoch from $schema.users where id = $1", [user.id]);
    assert.equal(row?.permission_epoch, 1);
  });

  test("RevokeRole answers NOT_FOUND for a role the user does not hold, or another tenant's user", async () => {
    const user = await activeUser(mesh, tenantA);
    await refusedWith(adminA.roles.revokeRole({ userId: user.id, roleId: "system:billing" }), Code.NotFound);
    await refusedWith(adminA.roles.revokeRole({ userId: userB.id, roleId: "system:member" }), Code.NotFound);
  });

  test("RevokeRole refuses to take Owner from the tenant's last active owner with FAILED_PRECONDITION", async () => {
    const { owner, ops } = await ownedTenant();
    await refusedWith(ops.roles.revokeRole({ userId: owner.id, roleId: "system:owner" }), Code.FailedPrecondition, "last active owner");
    const second = await activeUser(mesh, owner.tenantId, ["system:owner"]);
    await ops.users.suspendUser({ userId: second.id, reason: "" });
    await refusedWith(ops.roles.revokeRole({ userId: owner.id, roleId: "system:owner" }), Code.FailedPrecondition, "last active owner");
  });

  test("RevokeRole takes Owner from one of two active owners, and of two concurrent revocations exactly one succeeds", async () => {
    const { owner, ops } = await ownedTenant();
    const second = await activeUser(mesh, owner.tenantId, ["system:owner"]);
    const results = await Promise.allSettled([
      ops.roles.revokeRole({ userId: owner.id, roleId: "system:owner" }),
      ops.roles.revokeRole({ userId: second.id, roleId: "system:owner" }),
    ]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, "exactly one revocation wins");
    const owners = (await ops.users.listUsers({ roleId: "system:owner", state: UserState.ACTIVE })).users;
    assert.equal(owners.length, 1, "one active owner remains");
  });

  test("concurrent suspensions and deletions of two owners leave one active owner", async () => {
    const { owner, ops } = await ownedTenant();
    const second = await activeUser(mesh, owner.tenantId, ["system:owner"]);
    const results = await Promise.allSettled([ops.users.suspendUser({ userId: owner.id, reason: "" }), ops.users.deleteUser({ userId: second.id })]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    assert.equal((await ops.users.listUsers({ roleId: "system:owner", state: UserState.ACTIVE })).users.length, 1);
  });

  test("RevokeRole takes Owner only for a caller holding identity.roles.assign_owner, and refuses a caller without identity.roles.assign", async () => {
    const { owner } = await ownedTenant();
    const second = await activeUser(mesh, owner.tenantId, ["system:owner"]);
    await refusedWith(principalOf(mesh, owner.tenantId, roleAdmin).roles.revokeRole({ userId: second.id, roleId: "system:owner" }), Code.PermissionDenied, "identity.roles.assign_owner");
    await refusedWith(principalOf(mesh, owner.tenantId, ["identity.roles.read"]).roles.revokeRole({ userId: second.id, roleId: "system:member" }), Code.PermissionDenied, "identity.roles.assign");
  });
});

describe("TransferOwnership", () => {
  test("TransferOwnership makes an active user Owner and the calling owner Admin, in one step, with events", async () => {
    const { owner, ops } = await ownedTenant();
    const next = await activeUser(mesh, owner.tenantId);
    const { newOwner, previousOwner } = await signedIn(mesh, owner).roles.transferOwnership({ newOwnerUserId: next.id });
    assert.deepEqual(newOwner?.roleIds, ["system:member", "system:owner"]);
    assert.deepEqual(previousOwner?.roleIds, ["system:admin"]);
    assert.deepEqual((await ops.users.getUser({ userId: owner.id })).user?.roleIds, ["system:admin"]);
    const types = (await eventsOf(mesh, owner.tenantId)).filter((e) => e.type.startsWith("role.")).map((e) => `${e.type}:${e.aggregateId}`);
    assert.deepEqual(new Set(types), new Set([`role.ownership_transferred:${next.id}`, `role.revoked:${owner.id}`, `role.assigned:${owner.id}`]));
    await refusedWith(ops.roles.revokeRole({ userId: next.id, roleId: "system:owner" }), Code.FailedPrecondition, "last active owner");
  });

  test("TransferOwnership refuses a caller who is not an owner user with FAILED_PRECONDITION", async () => {
    const { owner, ops } = await ownedTenant();
    const next = await activeUser(mesh, owner.tenantId);
    const pretender = await activeUser(mesh, owner.tenantId, ["system:admin"]);
    await refusedWith(principalOf(mesh, owner.tenantId, ["identity.roles.assign_owner"], pretender.id).roles.transferOwnership({ newOwnerUserId: next.id }), Code.FailedPrecondition, "not an active Owner");
    await refusedWith(ops.roles.transferOwnership({ newOwnerUserId: next.id }), Code.FailedPrecondition);
    assert.deepEqual((await ops.users.getUser({ userId: owner.id })).user?.roleIds, ["system:owner"]);
  });

  test("TransferOwnership refuses a new owner who is not active with FAILED_PRECONDITION", async () => {
    const { owner } = await ownedTenant();
    const invited = await invite(mesh, owner.tenantId);
    await refusedWith(signedIn(mesh, owner).roles.transferOwnership({ newOwnerUserId: invited.user.id }), Code.FailedPrecondition, "not an active user");
  });

  test("TransferOwnership answers NOT_FOUND for a missing or another tenant's user and INVALID_ARGUMENT for the caller themself", async () => {
    const { owner } = await ownedTenant();
    const client = signedIn(mesh, owner);
    await refusedWith(client.roles.transferOwnership({ newOwnerUserId: missingUser }), Code.NotFound);
    await refusedWith(client.roles.transferOwnership({ newOwnerUserId: userB.id }), Code.NotFound);
    await refusedWith(client.roles.transferOwnership({ newOwnerUserId: owner.id }), Code.InvalidArgument, "new_owner_user_id");
    await refusedWith(client.roles.transferOwnership({ newOwnerUserId: "" }), Code.InvalidArgument, "new_owner_user_id");
  });

  test("TransferOwnership refuses a caller without identity.roles.assign_owner with PERMISSION_DENIED", async () => {
    const { owner } = await ownedTenant();
    await refusedWith(principalOf(mesh, owner.tenantId, roleAdmin, owner.id).roles.transferOwnership({ newOwnerUserId: missingUser }), Code.PermissionDenied, "identity.roles.assign_owner");
  });
});

describe("CheckPermission", () => {
  test("CheckPermission answers from every role the user holds", async () => {
    const user = await activeUser(mesh, tenantA, ["system:member"]);
    const check = (permission: string) => adminA.roles.checkPermission({ userId: user.id, permission }).then((r) => r.allowed);
    assert.equal(await check("identity.users.read"), true);
    assert.equal(await check("identity.users.create"), false);
    const { role } = await adminA.roles.createRole({ name: roleName(), permissions: ["identity.users.create"] });
    await adminA.roles.assignRole({ userId: user.id, roleId: role!.id });
    assert.equal(await check("identity.users.create"), true);
    await adminA.roles.updateRole({ roleId: role!.id, permissions: ["audit.records.read"], updateMask: { paths: ["permissions"] } });
    assert.equal(await check("identity.users.create"), false, "a role's new permissions apply at once");
    assert.equal(await check("audit.records.read"), true);
  });

  test("CheckPermission answers false for a user who is not active", async () => {
    const user = await activeUser(mesh, tenantA, ["system:developer"]);
    await adminA.users.suspendUser({ userId: user.id, reason: "" });
    assert.equal((await adminA.roles.checkPermission({ userId: user.id, permission: "keys.api_keys.create" })).allowed, false);
  });

  test("CheckPermission answers NOT_FOUND for another tenant's or a missing user", async () => {
    await refusedWith(adminA.roles.checkPermission({ userId: userB.id, permission: "identity.users.read" }), Code.NotFound);
    await refusedWith(adminA.roles.checkPermission({ userId: missingUser, permission: "identity.users.read" }), Code.NotFound);
  });

  test("CheckPermission refuses a permission outside the catalogue with INVALID_ARGUMENT naming permission", async () => {
    await refusedWith(adminA.roles.checkPermission({ userId: ownerA.id, permission: "identity.users.fly" }), Code.InvalidArgument, "permission");
    await refusedWith(adminA.roles.checkPermission({ userId: ownerA.id, permission: "" }), Code.InvalidArgument, "permission");
  });

  test("CheckPermission refuses a caller without identity.permissions.check with PERMISSION_DENIED", async () => {
    await refusedWith(nobodyA.roles.checkPermission({ userId: ownerA.id, permission: "identity.users.read" }), Code.PermissionDenied, "identity.permissions.check");
    await refusedWith(clientsWith(mesh, undefined).roles.checkPermission({ userId: ownerA.id, permission: "identity.users.read" }), Code.Unauthenticated);
  });
});

describe("no escalation through roles", () => {
  /** Tenant A's role manager: may manage and assign roles, and holds little else. */
  const managerPermissions = [...new Set(["identity.roles.read", "identity.roles.manage", "identity.roles.assign", ...systemRole("system:member")!.permissions])];

  test("a role manager cannot create a role granting a permission they lack", async () => {
    const manager = principalOf(mesh, tenantA, managerPermissions);
    await refusedWith(manager.roles.createRole({ name: roleName(), permissions: ["identity.roles.read", "identity.roles.assign_owner"] }), Code.PermissionDenied, "missing identity.roles.assign_owner");
    await refusedWith(manager.roles.createRole({ name: roleName(), permissions: permissionCatalogue.map((p) => p.name) }), Code.PermissionDenied, "creating this role");
    assert.ok((await manager.roles.createRole({ name: roleName(), permissions: ["identity.roles.read", "identity.roles.assign"] })).role?.id.startsWith("rol_"));
  });

  test("a role manager cannot widen a role they hold, refresh, and then make themselves Owner", async () => {
    const tenant = await tenantWithSlug(mesh);
    const ops = operatorIn(mesh, tenant.id);
    const { role } = await ops.roles.createRole({ name: roleName("Managers"), permissions: managerPermissions });
    const user = await createUser(mesh, tenant, { roles: [role!.id] });
    const tokens = await signIn(mesh, user);
    const self = clientsWith(mesh, tokens.accessToken);
    await refusedWith(
      self.roles.updateRole({ roleId: role!.id, permissions: permissionCatalogue.map((p) => p.name), updateMask: { paths: ["permissions"] } }),
      Code.PermissionDenied,
      "changing this role",
    );
    const refreshed = await anonymousAuth(mesh).refreshTokens({ refreshToken: tokens.refreshToken });
    assert.deepEqual(claimsOf(refreshed.tokens!.accessToken).perms, [...managerPermissions].sort(), "the refreshed token grants what it did before");
    const again = clientsWith(mesh, refreshed.tokens!.accessToken);
    await refusedWith(again.roles.assignRole({ userId: user.id, roleId: "system:owner" }), Code.PermissionDenied);
    await refusedWith(again.roles.assignRole({ userId: user.id, roleId: "system:admin" }), Code.PermissionDenied, "missing");
    assert.deepEqual((await ops.roles.listRoles({})).roles.find((r) => r.id === role!.id)?.permissions, [...managerPermissions].sort());
    assert.deepEqual((await ops.users.getUser({ userId: user.id })).user?.roleIds, [role!.id]);
  });

  test("a role manager cannot change a role granting more than they hold", async () => {
    const { role } = await adminA.roles.createRole({ name: roleName("Destroyers"), permissions: ["keys.encryption.destroy"] });
    const manager = principalOf(mesh, tenantA, managerPermissions);
    await refusedWith(manager.roles.updateRole({ roleId: role!.id, name: "Harmless", updateMask: { paths: ["name"] } }), Code.PermissionDenied, "missing keys.encryption.destroy");
    await refusedWith(manager.roles.updateRole({ roleId: role!.id, permissions: ["identity.roles.read"], updateMask: { paths: ["permissions"] } }), Code.PermissionDenied, "missing keys.encryption.destroy");
    const { role: narrowed } = await adminA.roles.updateRole({ roleId: role!.id, permissions: ["identity.roles.read"], updateMask: { paths: ["permissions"] } });
    assert.deepEqual(narrowed?.permissions, ["identity.roles.read"]);
  });
});

describe("roles of a more privileged user", () => {
  test("an admin can neither give a role to an owner nor take one away", async () => {
    const { owner, ops } = await ownedTenant();
    await ops.roles.assignRole({ userId: owner.id, roleId: "system:monitor" });
    const admin = principalOf(mesh, owner.tenantId, roleAdmin);
    await refusedWith(admin.roles.revokeRole({ userId: owner.id, roleId: "system:monitor" }), Code.PermissionDenied, "identity.roles.assign_owner, which the caller lacks");
    await refusedWith(admin.roles.assignRole({ userId: owner.id, roleId: "system:billing" }), Code.PermissionDenied, "which the caller lacks");
    assert.deepEqual((await ops.users.getUser({ userId: owner.id })).user?.roleIds, ["system:monitor", "system:owner"]);
  });

  test("an admin still manages the roles of another admin, and a team lead those of a member", async () => {
    const { owner } = await ownedTenant();
    const other = await activeUser(mesh, owner.tenantId, ["system:admin"]);
    const admin = principalOf(mesh, owner.tenantId, roleAdmin);
    assert.ok((await admin.roles.assignRole({ userId: other.id, roleId: "system:monitor" })).user?.roleIds.includes("system:monitor"));
    const member = await activeUser(mesh, owner.tenantId);
    const lead = principalOf(mesh, owner.tenantId, [...systemRole("system:team_lead")!.permissions, "identity.roles.assign"]);
    assert.ok((await lead.roles.assignRole({ userId: member.id, roleId: "system:developer" })).user?.roleIds.includes("system:developer"));
    await refusedWith(lead.roles.revokeRole({ userId: other.id, roleId: "system:monitor" }), Code.PermissionDenied, "which the caller lacks");
  });
});
