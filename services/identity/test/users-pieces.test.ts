/**
 * Unit tests of UserService's and RoleService's pieces that need no
 * database: tokens, page tokens, mapping, the tenant scope, the password
 * check and the refusals a handler makes before it opens a transaction.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { SecurityPolicySchema, UserState } from "@bulwark/contracts";
import { MeshKeys, runWithContext, systemRole, type CallContext, type Principal } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { EventPublisher } from "@bulwark/events";
import { hashInvitationToken, invitationLifetimeMs, newInvitationToken } from "../src/users/invitation-token.js";
import { customRoleToProto, systemRoleToProto, userState, userToProto } from "../src/users/mappers.js";
import { decodeCursor, encodeCursor } from "@bulwark/core";
import { checkNewPassword, hashPassword } from "../src/users/password.js";
import { RoleServiceImpl } from "../src/users/role-service.js";
import { tenantInScope } from "../src/users/scope.js";
import { refuseLastOwner, type UsersDeps } from "../src/users/store.js";
import { UserServiceImpl } from "../src/users/user-service.js";

/** Asserts that `fn` throws (or rejects with) a ConnectError with `code` whose message mentions `mentions`. */
async function refused(fn: () => unknown, code: Code, mentions?: string): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(Code[err.code], Code[code], err.rawMessage);
    if (mentions !== undefined) assert.ok(err.rawMessage.includes(mentions), err.rawMessage);
    return;
  }
  assert.fail(`expected ${Code[code]}`);
}

/** Dependencies whose database must not be reached: the refusal comes first. */
const untouchable: UsersDeps = {
  db: { transaction: () => Promise.reject(new Error("the database was used")) } as unknown as Database,
  events: new EventPublisher({ service: "identity", keys: MeshKeys.development("identity") }),
  tenancy: { getSecurityPolicy: () => Promise.reject(new Error("tenancy was called")), getTenant: () => Promise.reject(new Error("tenancy was called")) } as unknown as UsersDeps["tenancy"],
};

function user(tenantId: string, permissions: string[], id = "usr_caller"): Principal {
  return { id, kind: "user", tenantId, permissions: new Set(permissions) };
}

function inContext<T>(ctx: Omit<CallContext, "requestId">, fn: () => T): T {
  return runWithContext({ requestId: "req_test", ...ctx }, fn);
}

describe("invitation tokens", () => {
  test("a token is 32 random bytes in base64url and differs every time", () => {
    const a = newInvitationToken();
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(a, "base64url").length, 32);
    assert.notEqual(a, newInvitationToken());
  });

  test("only the SHA-256 of a token is stored, and invitations last seven days", () => {
    const t = newInvitationToken();
    assert.equal(hashInvitationToken(t), createHash("sha256").update(t).digest("hex"));
    assert.equal(invitationLifetimeMs, 7 * 24 * 3600 * 1000);
  });
});

describe("ListUsers page tokens", () => {
  test("a page token round-trips and is valid only with the filters it was issued for", () => {
    const c = { createdAt: new Date("2026-01-02T03:04:05.678Z"), id: "usr_abc", filter: "2::ann" };
    assert.deepEqual(decodeCursor(encodeCursor(c), c.filter, "usr_"), c);
    assert.throws(() => decodeCursor(encodeCursor(c), "0::", "usr_"), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && e.rawMessage.includes("page_token"));
  });

  test("anything else is INVALID_ARGUMENT naming page_token", () => {
    for (const token of ["", "garbage", Buffer.from("{}").toString("base64url"), encodeCursor({ createdAt: new Date(), id: "ten_x", filter: "" })]) {
      assert.throws(() => decodeCursor(token, "", "usr_"), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && e.rawMessage.includes("page_token"));
    }
  });
});

describe("mapping", () => {
  const now = new Date("2026-02-03T04:05:06Z");
  const row = { id: "usr_1", tenantId: "ten_1", email: "a@b.test", displayName: "A", state: userState.active, passwordHash: "$argon2id$secret", mfaEnrolled: true, createdAt: now, updatedAt: now, lastSignInAt: null, lastActivityAt: now, version: 1 };

  test("a user maps with its state by name, sorted roles, and never its password hash", () => {
    const u = userToProto(row, ["system:member", "rol_b", "rol_a"]);
    assert.equal(u.state, UserState.ACTIVE);
    assert.deepEqual(u.roleIds, ["rol_a", "rol_b", "system:member"]);
    assert.equal(u.lastSignInTime, undefined);
    assert.ok(u.lastActivityTime !== undefined);
    assert.ok(!JSON.stringify(u, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)).includes("argon2"));
    assert.deepEqual(userState, { invited: "INVITED", active: "ACTIVE", suspended: "SUSPENDED" });
  });

  test("system roles map with no tenant and system set; custom roles with their tenant", () => {
    const owner = systemRoleToProto(systemRole("system:owner")!);
    assert.equal(owner.tenantId, "");
    assert.ok(owner.system && owner.requiresMfa);
    const custom = customRoleToProto({ id: "rol_1", tenantId: "ten_1", name: "R", description: "", permissions: ["b.c.d", "a.b.c"], createdAt: now, updatedAt: now });
    assert.deepEqual(custom.permissions, ["a.b.c", "b.c.d"]);
    assert.ok(!custom.system && !custom.requiresMfa);
  });
});

describe("tenant scope", () => {
  test("the tenant in scope comes from the call context", () => {
    assert.equal(inContext({ tenantId: "ten_1" }, tenantInScope), "ten_1");
  });

  test("without a tenant in scope the call is FAILED_PRECONDITION", async () => {
    await refused(() => inContext({ principal: { id: "bootstrap", kind: "bootstrap", permissions: new Set(["*"]) } }, tenantInScope), Code.FailedPrecondition, "no tenant in scope");
    await refused(() => tenantInScope(), Code.FailedPrecondition);
  });
});

describe("last owner", () => {
  test("only the sole active owner is protected", () => {
    assert.throws(() => refuseLastOwner(["usr_a"], "usr_a"), (e: unknown) => e instanceof ConnectError && e.code === Code.FailedPrecondition);
    refuseLastOwner(["usr_a", "usr_b"], "usr_a");
    refuseLastOwner(["usr_a"], "usr_b");
    refuseLastOwner([], "usr_b");
  });
});

describe("new passwords", () => {
  const policy = (min: number) => create(SecurityPolicySchema, { tenantId: "ten_1", passwordMinLength: min });
  const person = { email: "jane.doe@example.test", displayName: "Jane Doe" };

  test("a password shorter than the tenant's minimum or longer than 256 is INVALID_ARGUMENT naming password", async () => {
    await refused(() => checkNewPassword({ password: "Vq8#mz!Lp2", policy: policy(12), ...person }), Code.InvalidArgument, "password");
    await refused(() => checkNewPassword({ password: "glacier-Tulip-47-harbor", policy: policy(30), ...person }), Code.InvalidArgument, "password");
    await refused(() => checkNewPassword({ password: `glacier-Tulip-47-harbor-${"x".repeat(240)}`, policy: policy(12), ...person }), Code.InvalidArgument, "password");
  });

  test("a long, unguessable password passes", async () => {
    await checkNewPassword({ password: "glacier-Tulip-47-harbor", policy: policy(12), ...person });
  });

  test("passwords are hashed with argon2id, m=19456 KiB, t=2, p=1", async () => {
    assert.match(await hashPassword("glacier-Tulip-47-harbor"), /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  });
});

describe("refusals before any database work", () => {
  const roles = new RoleServiceImpl(untouchable);
  const users = new UserServiceImpl(untouchable);
  const tenantCtx = (permissions: string[], p?: Principal) => ({ tenantId: "ten_1", principal: p ?? user("ten_1", permissions) });

  test("ListPermissions needs no tenant and returns the catalogue", () => {
    assert.ok(roles.listPermissions().permissions.length > 50);
  });

  test("CreateRole names the first permission outside the catalogue", async () => {
    await refused(() => inContext(tenantCtx([]), () => roles.createRole({ name: "R", description: "", permissions: ["audit.records.read", "x.y.z"] } as never)), Code.InvalidArgument, "permissions[1]");
    await refused(() => inContext(tenantCtx([]), () => roles.createRole({ name: "Monitor", description: "", permissions: ["audit.records.read"] } as never)), Code.AlreadyExists);
  });

  test("UpdateRole and DeleteRole refuse system roles", async () => {
    await refused(() => inContext(tenantCtx([]), () => roles.updateRole({ roleId: "system:admin", updateMask: { paths: ["name"] } } as never)), Code.FailedPrecondition);
    await refused(() => inContext(tenantCtx([]), () => roles.deleteRole({ roleId: "system:member" })), Code.FailedPrecondition);
    await refused(() => inContext(tenantCtx([]), () => roles.deleteRole({ roleId: "system:nobody" })), Code.NotFound);
  });

  test("giving or taking Owner needs identity.roles.assign_owner; platform principals hold it through *", async () => {
    await refused(() => inContext(tenantCtx(["identity.roles.assign"]), () => roles.assignRole({ userId: "usr_x", roleId: "system:owner" })), Code.PermissionDenied, "identity.roles.assign_owner");
    await refused(() => inContext(tenantCtx(["identity.roles.assign"]), () => roles.revokeRole({ userId: "usr_x", roleId: "system:owner" })), Code.PermissionDenied, "identity.roles.assign_owner");
    await refused(() => inContext(tenantCtx(["identity.users.create"]), () => users.createUser({ email: "a@b.test", displayName: "A", roleIds: ["system:owner"] } as never)), Code.PermissionDenied);
    const operator: Principal = { id: "bootstrap", kind: "bootstrap", permissions: new Set(["*"]) };
    // The operator passes the permission check and reaches tenancy (which this test forbids).
    await assert.rejects(inContext(tenantCtx([], operator), () => users.createUser({ email: "a@b.test", displayName: "A", roleIds: ["system:owner"] } as never)), /tenancy was called/);
  });

  test("TransferOwnership is for a user principal, to someone else", async () => {
    const operator: Principal = { id: "bootstrap", kind: "bootstrap", permissions: new Set(["*"]) };
    await refused(() => inContext(tenantCtx([], operator), () => roles.transferOwnership({ newOwnerUserId: "usr_b" })), Code.FailedPrecondition);
    await refused(() => inContext(tenantCtx(["identity.roles.assign_owner"]), () => roles.transferOwnership({ newOwnerUserId: "usr_caller" })), Code.InvalidArgument, "new_owner_user_id");
  });

  test("OffboardUser refuses the user as their own successor, UpdateUser an unknown path, CheckPermission an unknown permission", async () => {
    await refused(() => inContext(tenantCtx([]), () => users.offboardUser({ userId: "usr_a", successorUserId: "usr_a" } as never)), Code.InvalidArgument, "successor_user_id");
    await refused(() => inContext(tenantCtx([]), () => users.updateUser({ userId: "usr_a", displayName: "X", updateMask: { paths: ["email"] } } as never)), Code.InvalidArgument, "update_mask");
    await refused(() => inContext(tenantCtx([]), () => roles.checkPermission({ userId: "usr_a", permission: "a.b.c" })), Code.InvalidArgument, "permission");
  });

  test("every tenant-scoped RPC refuses a call with no tenant in scope", async () => {
    const none = { principal: { id: "bootstrap", kind: "bootstrap" as const, permissions: new Set(["*"]) } };
    for (const call of [
      () => users.getUser({ userId: "usr_a" }),
      () => users.listUsers({ pageSize: 0, pageToken: "", state: 0, roleId: "", emailPrefix: "" } as never),
      () => users.suspendUser({ userId: "usr_a", reason: "" }),
      () => users.deleteUser({ userId: "usr_a" }),
      () => roles.listRoles(),
      () => roles.assignRole({ userId: "usr_a", roleId: "system:member" }),
    ]) {
      await refused(() => inContext(none, call), Code.FailedPrecondition, "no tenant in scope");
    }
  });
});
