import { test } from "node:test";
import assert from "node:assert/strict";
import { bulwarkServices } from "@bulwark/contracts";
import { adminRoleId, effectivePermissions, isCataloguePermission, memberRoleId, ownerRoleId, permissionCatalogue, ruleOf, systemRole, systemRoles } from "../src/index.js";

const wellFormed = /^[a-z]+\.[a-z][a-z_]*\.[a-z][a-z_]*$/;

test("the catalogue has more than 50 permissions, each named once, well formed and described", () => {
  assert.ok(permissionCatalogue.length > 50, `only ${permissionCatalogue.length} permissions`);
  const names = permissionCatalogue.map((p) => p.name);
  assert.equal(new Set(names).size, names.length, "a permission is declared twice");
  for (const p of permissionCatalogue) {
    assert.match(p.name, wellFormed);
    assert.ok(p.description.length > 0, `${p.name} has no description`);
  }
  assert.deepEqual(names, [...names].sort(), "the catalogue is sorted by name");
});

test("every permission an RPC rule of the mesh names is in the catalogue", () => {
  const named = bulwarkServices.flatMap((s) => s.methods.map((m) => ({ method: `${s.typeName}/${m.name}`, permission: ruleOf(m)?.permission ?? "" })));
  assert.ok(named.length > 20);
  for (const { method, permission } of named) {
    if (permission === "") continue;
    assert.ok(isCataloguePermission(permission), `${method} needs ${permission}, which is not in the catalogue`);
  }
});

test("the services still to come find their permissions in the catalogue", () => {
  for (const p of [
    "keys.api_keys.create", "keys.api_keys.read", "keys.api_keys.list", "keys.api_keys.revoke", "keys.api_keys.rotate", "keys.api_keys.verify",
    "keys.encryption.encrypt", "keys.encryption.decrypt", "keys.encryption.rotate", "keys.encryption.destroy",
    "audit.records.read", "audit.records.export", "audit.records.verify", "audit.retention.manage",
    "compliance.exports.create", "compliance.exports.read", "compliance.erasures.create", "compliance.erasures.read", "compliance.reports.read", "compliance.retention.manage", "compliance.posture.read",
    "identity.mfa.self", "identity.passkeys.self", "identity.recovery_codes.self", "identity.operators.manage",
  ]) {
    assert.ok(isCataloguePermission(p), p);
  }
});

test("the eight system roles have distinct system: ids and only catalogue permissions", () => {
  assert.deepEqual(systemRoles.map((r) => r.name), ["Owner", "Admin", "Team Lead", "Project Manager", "Member", "Developer", "Monitor", "Billing"]);
  assert.equal(new Set(systemRoles.map((r) => r.id)).size, 8);
  for (const r of systemRoles) {
    assert.match(r.id, /^system:[a-z_]+$/);
    assert.ok(r.permissions.length > 0);
    for (const p of r.permissions) assert.ok(isCataloguePermission(p), `${r.name}: ${p}`);
  }
});

test("Owner holds every permission and Admin all but assigning owners and closing the tenant; both require MFA", () => {
  const owner = systemRole(ownerRoleId)!;
  const admin = systemRole(adminRoleId)!;
  assert.equal(owner.permissions.length, permissionCatalogue.length);
  assert.deepEqual(permissionCatalogue.map((p) => p.name).filter((p) => !admin.permissions.includes(p)), ["identity.roles.assign_owner", "tenancy.tenants.close"]);
  assert.ok(owner.requiresMfa && admin.requiresMfa);
  assert.deepEqual(systemRoles.filter((r) => r.requiresMfa).map((r) => r.id), [ownerRoleId, adminRoleId]);
});

test("Member is self-service, Developer adds keys, Monitor only reads, Billing manages the plan", () => {
  const member = systemRole(memberRoleId)!.permissions;
  for (const p of ["identity.sessions.self", "identity.password.self", "identity.mfa.self", "identity.passkeys.self", "identity.recovery_codes.self", "identity.users.read", "tenancy.tenants.read"]) assert.ok(member.includes(p), p);
  assert.ok(!member.some((p) => p.endsWith(".create") || p.endsWith(".delete") || p.endsWith(".manage")));
  const developer = systemRole("system:developer")!.permissions;
  for (const p of member) assert.ok(developer.includes(p), `Developer lacks Member's ${p}`);
  for (const p of ["keys.api_keys.create", "keys.api_keys.revoke", "keys.api_keys.rotate", "keys.encryption.encrypt", "keys.encryption.decrypt"]) assert.ok(developer.includes(p), p);
  assert.ok(!developer.includes("keys.encryption.destroy"));
  const monitor = systemRole("system:monitor")!.permissions;
  assert.ok(monitor.every((p) => p.endsWith(".read") || p.endsWith(".list")));
  assert.ok(monitor.includes("audit.records.read") && monitor.includes("identity.users.list"));
  assert.deepEqual([...systemRole("system:billing")!.permissions], ["compliance.reports.read", "tenancy.tenants.read", "tenancy.tenants.update"]);
});

test("effective permissions are the union of system and custom roles; unknown roles grant nothing", () => {
  const custom = [{ id: "rol_a", permissions: ["audit.records.export"] }];
  const perms = effectivePermissions([memberRoleId, "rol_a", "rol_gone", "system:nonsense"], custom);
  assert.ok(perms.has("identity.sessions.self"));
  assert.ok(perms.has("audit.records.export"));
  assert.ok(!perms.has("identity.users.create"));
  assert.equal(effectivePermissions([]).size, 0);
  assert.equal(effectivePermissions([ownerRoleId]).size, permissionCatalogue.length);
});
