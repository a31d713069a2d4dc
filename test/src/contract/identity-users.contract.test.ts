/**
 * The contract of bulwark.identity.v1.UserService as its callers rely on
 * it: every RPC through the generated typed client against real servers
 * (identity and the tenancy it asks for policies; real Postgres and NATS),
 * its success case and each error code its proto comment documents,
 * including another tenant's user looking missing and the tenant's last
 * active owner being protected.
 */
import { systemRole } from "@bulwark/core";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService, Region, SessionRevokedSchema, UserInvitationTokenRevealedSchema, UserResourcesTransferredSchema, UserState, UserSuspendedSchema, UserUpdatedSchema, type User } from "@bulwark/contracts";
import { bootstrapToken, clientFor, uniqueSlug } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import {
  activeUser,
  clientsWith,
  eventsOf,
  eventTypesFor,
  identityQuery,
  invite,
  newTenant,
  operatorIn,
  principalOf,
  signedIn,
  startIdentityMesh,
  strongPassword,
  uniqueEmail,
  type IdentityClients,
  type IdentityMesh,
} from "./support-identity.js";

const userAdmin = [
  "identity.users.create",
  "identity.users.read",
  "identity.users.list",
  "identity.users.update",
  "identity.users.suspend",
  "identity.users.delete",
  "identity.users.offboard",
];
const missingUser = "usr_0000000000000000000000000";

let mesh: IdentityMesh;
/** Tenant A with an active owner; tenant B with a user of its own. */
let tenantA: string;
let tenantB: string;
let ownerA: User;
let userB: User;
/** Tenant A's user administrator (every UserService permission, not Owner), and a principal holding nothing. */
let adminA: IdentityClients;
let nobodyA: IdentityClients;

before(async () => {
  mesh = await startIdentityMesh();
  [tenantA, tenantB] = await Promise.all([newTenant(mesh), newTenant(mesh)]);
  ownerA = await activeUser(mesh, tenantA, ["system:owner"]);
  userB = await activeUser(mesh, tenantB);
  adminA = principalOf(mesh, tenantA, [...userAdmin, ...systemRole("system:admin")!.permissions]);
  nobodyA = principalOf(mesh, tenantA, []);
});

after(async () => {
  await mesh?.stop();
});

/** A principal of tenant A holding every permission an Owner holds (no user acts on one with less). */
function ownerLevel(): IdentityClients {
  return principalOf(mesh, tenantA, systemRole("system:owner")!.permissions);
}

describe("bootstrapping a tenant's first owner", () => {
  test("an operator naming the tenant in bulwark-tenant invites the first Owner, who accepts and is the tenant's active owner", async () => {
    const tenant = await newTenant(mesh);
    const ops = operatorIn(mesh, tenant);
    const { user, invitationToken } = await ops.users.createUser({ email: "Founder@Example.TEST", displayName: "Founder", roleIds: ["system:owner"], returnInvitationToken: true });
    assert.equal(user?.state, UserState.INVITED);
    assert.deepEqual(user?.roleIds, ["system:owner"]);
    assert.equal(user?.tenantId, tenant);
    const accepted = await clientsWith(mesh, undefined).users.acceptInvitation({ invitationToken, password: strongPassword() });
    assert.equal(accepted.user?.state, UserState.ACTIVE);
    const owner = signedIn(mesh, accepted.user!);
    assert.equal((await owner.users.getUser({ userId: user!.id })).user?.email, "founder@example.test");
    await refusedWith(ops.users.suspendUser({ userId: user!.id, reason: "x" }), Code.FailedPrecondition, "last active owner");
  });

  test("an operator who names no tenant is refused with FAILED_PRECONDITION", async () => {
    const ops = clientsWith(mesh, bootstrapToken);
    await refusedWith(ops.users.createUser({ email: uniqueEmail(), displayName: "X", roleIds: ["system:owner"] }), Code.FailedPrecondition, "no tenant in scope");
    await refusedWith(ops.users.listUsers({}), Code.FailedPrecondition, "no tenant in scope");
  });

  test("an operator naming a tenant that does not exist is refused with NOT_FOUND", async () => {
    await refusedWith(operatorIn(mesh, "ten_0000000000000000000000000").users.createUser({ email: uniqueEmail(), displayName: "X", roleIds: ["system:owner"] }), Code.NotFound);
  });

  test("a tenant principal naming another tenant in bulwark-tenant is refused with PERMISSION_DENIED", async () => {
    const token = mesh.identity.issueToken({ id: "usr_x", kind: "user", tenantId: tenantA, permissions: new Set(userAdmin) });
    await refusedWith(clientsWith(mesh, token, { "bulwark-tenant": tenantB }).users.getUser({ userId: userB.id }), Code.PermissionDenied);
  });
});

describe("CreateUser", () => {
  test("CreateUser invites a Member with a lower-cased email and a single-use token stored only as its SHA-256", async () => {
    const { user, invitationToken } = await adminA.users.createUser({ email: "New.Person@Example.TEST", displayName: "New Person", returnInvitationToken: true });
    assert.ok(user !== undefined);
    assert.match(user.id, /^usr_[a-z0-9]+$/);
    assert.equal(user.email, "new.person@example.test");
    assert.equal(user.displayName, "New Person");
    assert.equal(user.state, UserState.INVITED);
    assert.deepEqual(user.roleIds, ["system:member"]);
    assert.equal(user.mfaEnrolled, false);
    assert.ok(user.createTime !== undefined && user.lastSignInTime === undefined);
    assert.match(invitationToken, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
    const rows = await identityQuery<{ token_hash: string; expires_at: Date; created_at: Date; used_at: Date | null }>(mesh, "select token_hash, expires_at, created_at, used_at from $schema.invitations where user_id = $1", [user.id]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.token_hash, createHash("sha256").update(invitationToken).digest("hex"));
    assert.equal(rows[0]!.used_at, null);
    assert.equal(rows[0]!.expires_at.getTime() - rows[0]!.created_at.getTime(), 7 * 86_400_000, "valid seven days");
    const stored = JSON.stringify(await identityQuery(mesh, "select * from $schema.invitations"));
    assert.ok(!stored.includes(invitationToken), "the token itself is never stored");
    assert.deepEqual(await eventTypesFor(mesh, tenantA, user.id), ["user.invited", "user.invitation_token_revealed"]);
    assert.deepEqual((await adminA.users.getUser({ userId: user.id })).user, user);
  });

  test("the inviter does not receive the invitation token unless they ask for it, and asking is recorded with who received it", async () => {
    const quiet = await adminA.users.createUser({ email: uniqueEmail("quiet"), displayName: "Quiet" });
    assert.equal(quiet.invitationToken, "", "the token goes to the invitee only");
    assert.deepEqual(await eventTypesFor(mesh, tenantA, quiet.user!.id), ["user.invited"]);
    const inviterId = `usr_${Date.now().toString(36)}inviter`;
    const inviter = principalOf(mesh, tenantA, [...userAdmin, ...systemRole("system:admin")!.permissions], inviterId);
    const asked = await inviter.users.createUser({ email: uniqueEmail("asked"), displayName: "Asked", returnInvitationToken: true });
    assert.match(asked.invitationToken, /^[A-Za-z0-9_-]{43}$/);
    const revealed = (await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === asked.user!.id && e.type === "user.invitation_token_revealed");
    assert.equal(revealed.length, 1);
    const payload = fromBinary(UserInvitationTokenRevealedSchema, revealed[0]!.payload);
    assert.deepEqual([payload.userId, payload.revealedTo, revealed[0]!.actorId], [asked.user!.id, inviterId, inviterId]);
    const outbox = await identityQuery<{ envelope: Buffer }>(mesh, "select envelope from $schema.outbox where tenant_id = $1", [tenantA]);
    assert.ok(outbox.every((r) => !r.envelope.includes(Buffer.from(asked.invitationToken))), "no event carries the token");
    const { user } = await clientsWith(mesh, undefined).users.acceptInvitation({ invitationToken: asked.invitationToken, password: strongPassword() });
    assert.equal(user?.state, UserState.ACTIVE);
  });

  test("CreateUser assigns the roles it is given", async () => {
    const { user } = await adminA.users.createUser({ email: uniqueEmail(), displayName: "Dev", roleIds: ["system:developer", "system:monitor"] });
    assert.deepEqual(user?.roleIds, ["system:developer", "system:monitor"]);
  });

  test("CreateUser refuses an email taken in the tenant, whatever its case, with ALREADY_EXISTS", async () => {
    const email = uniqueEmail("taken");
    await adminA.users.createUser({ email, displayName: "First" });
    await refusedWith(adminA.users.createUser({ email: email.toUpperCase(), displayName: "Second" }), Code.AlreadyExists, email);
  });

  test("CreateUser accepts an email taken in another tenant", async () => {
    const { user } = await adminA.users.createUser({ email: userB.email, displayName: "Same Email" });
    assert.equal(user?.email, userB.email);
    assert.equal(user?.tenantId, tenantA);
  });

  test("CreateUser refuses a malformed email or a missing display_name with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(adminA.users.createUser({ email: "not-an-email", displayName: "X" }), Code.InvalidArgument, "email");
    await refusedWith(adminA.users.createUser({ email: "", displayName: "X" }), Code.InvalidArgument, "email");
    await refusedWith(adminA.users.createUser({ email: uniqueEmail(), displayName: "" }), Code.InvalidArgument, "display_name");
    await refusedWith(adminA.users.createUser({ email: uniqueEmail(), displayName: "x".repeat(201) }), Code.InvalidArgument, "display_name");
    await refusedWith(adminA.users.createUser({ email: uniqueEmail(), displayName: "X", roleIds: ["system:member", "system:member"] }), Code.InvalidArgument, "role_ids");
  });

  test("CreateUser refuses a role that does not exist, or another tenant's role, with NOT_FOUND and creates nothing", async () => {
    const email = uniqueEmail();
    await refusedWith(adminA.users.createUser({ email, displayName: "X", roleIds: ["system:emperor"] }), Code.NotFound, "system:emperor");
    await refusedWith(adminA.users.createUser({ email, displayName: "X", roleIds: ["rol_0000000000000000000000000"] }), Code.NotFound);
    const { role } = await operatorIn(mesh, tenantB).roles.createRole({ name: "B only", permissions: ["audit.records.read"] });
    await refusedWith(adminA.users.createUser({ email, displayName: "X", roleIds: [role!.id] }), Code.NotFound);
    assert.equal((await adminA.users.listUsers({ emailPrefix: email })).users.length, 0);
  });

  test("CreateUser refuses to give Owner without identity.roles.assign_owner with PERMISSION_DENIED", async () => {
    await refusedWith(adminA.users.createUser({ email: uniqueEmail(), displayName: "X", roleIds: ["system:owner"] }), Code.PermissionDenied, "identity.roles.assign_owner");
    const owner = principalOf(mesh, tenantA, systemRole("system:owner")!.permissions);
    assert.deepEqual((await owner.users.createUser({ email: uniqueEmail(), displayName: "X", roleIds: ["system:owner"] })).user?.roleIds, ["system:owner"]);
  });

  test("CreateUser refuses a caller without identity.users.create with PERMISSION_DENIED and one without a credential with UNAUTHENTICATED", async () => {
    await refusedWith(nobodyA.users.createUser({ email: uniqueEmail(), displayName: "X" }), Code.PermissionDenied, "identity.users.create");
    await refusedWith(clientsWith(mesh, undefined).users.createUser({ email: uniqueEmail(), displayName: "X" }), Code.Unauthenticated);
  });
});

describe("AcceptInvitation", () => {
  test("AcceptInvitation activates the user with an argon2id password hash (m=19456, t=2, p=1) and needs no credential", async () => {
    const { user, token } = await invite(mesh, tenantA);
    const { user: active } = await clientsWith(mesh, undefined).users.acceptInvitation({ invitationToken: token, password: strongPassword() });
    assert.equal(active?.id, user.id);
    assert.equal(active?.state, UserState.ACTIVE);
    const [row] = await identityQuery<{ password_hash: string }>(mesh, "select password_hash from $schema.users where id = $1", [user.id]);
    assert.match(row!.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const [inv] = await identityQuery<{ used_at: Date | null }>(mesh, "select used_at from $schema.invitations where user_id = $1", [user.id]);
    assert.ok(inv!.used_at !== null);
    assert.deepEqual(await eventTypesFor(mesh, tenantA, user.id), ["user.invited", "user.invitation_token_revealed", "user.activated"]);
  });

  test("AcceptInvitation answers FAILED_PRECONDITION alike for a used, an unknown and an expired token", async () => {
    const anon = clientsWith(mesh, undefined).users;
    const { token } = await invite(mesh, tenantA);
    await anon.acceptInvitation({ invitationToken: token, password: strongPassword() });
    const used = await refusedWith(anon.acceptInvitation({ invitationToken: token, password: strongPassword() }), Code.FailedPrecondition);
    const unknown = await refusedWith(anon.acceptInvitation({ invitationToken: "A".repeat(43), password: strongPassword() }), Code.FailedPrecondition);
    const { user, token: late } = await invite(mesh, tenantA);
    await identityQuery(mesh, "update $schema.invitations set expires_at = now() - interval '1 second' where user_id = $1", [user.id]);
    const expired = await refusedWith(anon.acceptInvitation({ invitationToken: late, password: strongPassword() }), Code.FailedPrecondition);
    assert.equal(used.rawMessage, unknown.rawMessage);
    assert.equal(expired.rawMessage, unknown.rawMessage);
  });

  test("AcceptInvitation lets exactly one of two concurrent acceptances of a token succeed", async () => {
    const { token } = await invite(mesh, tenantA);
    const anon = clientsWith(mesh, undefined).users;
    const results = await Promise.allSettled([anon.acceptInvitation({ invitationToken: token, password: strongPassword() }), anon.acceptInvitation({ invitationToken: token, password: strongPassword() })]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const rejected = results.find((r) => r.status === "rejected");
    assert.equal(ConnectError.from(rejected?.reason).code, Code.FailedPrecondition);
  });

  test("AcceptInvitation refuses a password shorter than the tenant policy's minimum with INVALID_ARGUMENT naming password, and the token stays usable", async () => {
    const tenant = await newTenant(mesh);
    await mesh.tenancyOps.updateSecurityPolicy({ tenantId: tenant, policy: { passwordMinLength: 50 }, updateMask: { paths: ["password_min_length"] } });
    const { token } = await invite(mesh, tenant);
    const anon = clientsWith(mesh, undefined).users;
    const short = strongPassword();
    assert.ok(short.length < 50);
    await refusedWith(anon.acceptInvitation({ invitationToken: token, password: short }), Code.InvalidArgument, "password");
    const { user } = await anon.acceptInvitation({ invitationToken: token, password: `${short}-${short}` });
    assert.equal(user?.state, UserState.ACTIVE);
  });

  test("AcceptInvitation refuses a password under the default 12 characters or over 256 with INVALID_ARGUMENT naming password", async () => {
    const { token } = await invite(mesh, tenantA);
    const anon = clientsWith(mesh, undefined).users;
    await refusedWith(anon.acceptInvitation({ invitationToken: token, password: "Xq7!vR2#" }), Code.InvalidArgument, "password");
    await refusedWith(anon.acceptInvitation({ invitationToken: token, password: `${strongPassword()}${"z".repeat(256)}` }), Code.InvalidArgument, "password");
    await refusedWith(anon.acceptInvitation({ invitationToken: token, password: "" }), Code.InvalidArgument, "password");
    await refusedWith(anon.acceptInvitation({ invitationToken: "", password: strongPassword() }), Code.InvalidArgument, "invitation_token");
  });

  test("AcceptInvitation refuses the token of a deleted or suspended invitee with FAILED_PRECONDITION", async () => {
    const anon = clientsWith(mesh, undefined).users;
    const deleted = await invite(mesh, tenantA);
    await adminA.users.deleteUser({ userId: deleted.user.id });
    await refusedWith(anon.acceptInvitation({ invitationToken: deleted.token, password: strongPassword() }), Code.FailedPrecondition);
    const suspended = await invite(mesh, tenantA);
    await adminA.users.suspendUser({ userId: suspended.user.id, reason: "left before starting" });
    await refusedWith(anon.acceptInvitation({ invitationToken: suspended.token, password: strongPassword() }), Code.FailedPrecondition);
  });
});

describe("GetUser", () => {
  test("GetUser returns a user of the caller's tenant with their roles", async () => {
    const { user } = await principalOf(mesh, tenantA, ["identity.users.read"]).users.getUser({ userId: ownerA.id });
    assert.equal(user?.id, ownerA.id);
    assert.deepEqual(user?.roleIds, ["system:owner"]);
    assert.equal(user?.state, UserState.ACTIVE);
  });

  test("GetUser answers NOT_FOUND for another tenant's user exactly as for a missing one", async () => {
    const other = await refusedWith(adminA.users.getUser({ userId: userB.id }), Code.NotFound);
    const missing = await refusedWith(adminA.users.getUser({ userId: missingUser }), Code.NotFound);
    assert.equal(other.rawMessage, missing.rawMessage);
  });

  test("GetUser refuses an id without the usr_ prefix with INVALID_ARGUMENT naming user_id", async () => {
    await refusedWith(adminA.users.getUser({ userId: "ten_1" }), Code.InvalidArgument, "user_id");
    await refusedWith(adminA.users.getUser({ userId: "" }), Code.InvalidArgument, "user_id");
  });

  test("GetUser refuses a caller without identity.users.read with PERMISSION_DENIED and no credential with UNAUTHENTICATED", async () => {
    await refusedWith(nobodyA.users.getUser({ userId: ownerA.id }), Code.PermissionDenied, "identity.users.read");
    await refusedWith(clientsWith(mesh, undefined).users.getUser({ userId: ownerA.id }), Code.Unauthenticated);
    await refusedWith(clientsWith(mesh, "a-token-nobody-issued-0123456789").users.getUser({ userId: ownerA.id }), Code.Unauthenticated);
  });
});

describe("ListUsers", () => {
  let tenant: string;
  let lister: IdentityClients;
  let made: User[];

  before(async () => {
    tenant = await newTenant(mesh);
    lister = principalOf(mesh, tenant, ["identity.users.list", ...userAdmin]);
    made = [];
    for (const [i, email] of ["ann@one.test", "anna@one.test", "bob@two.test", "a_b@three.test", "axb@three.test"].entries()) {
      made.push((await operatorIn(mesh, tenant).users.createUser({ email, displayName: `U${i}`, roleIds: i === 2 ? ["system:developer"] : [] })).user!);
    }
    await operatorIn(mesh, tenant).users.acceptInvitation({ invitationToken: (await invite(mesh, tenant, [], "carol@two.test")).token, password: strongPassword() });
  });

  test("ListUsers returns the tenant's users newest first and nobody else's", async () => {
    const { users, nextPageToken } = await lister.users.listUsers({});
    assert.equal(users.length, 6);
    assert.equal(nextPageToken, "");
    assert.deepEqual(users.slice(1).map((u) => u.id), [...made].reverse().map((u) => u.id));
    assert.ok(users.every((u) => u.tenantId === tenant));
  });

  test("ListUsers pages with page_size and next_page_token, without gaps or repeats", async () => {
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await lister.users.listUsers({ pageSize: 2, pageToken });
      assert.ok(page.users.length <= 2);
      seen.push(...page.users.map((u) => u.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    assert.equal(pages, 3);
    assert.equal(new Set(seen).size, 6);
  });

  test("ListUsers filters by state, role and a case-insensitive email prefix in which % and _ are literal", async () => {
    assert.deepEqual((await lister.users.listUsers({ state: UserState.ACTIVE })).users.map((u) => u.email), ["carol@two.test"]);
    assert.equal((await lister.users.listUsers({ state: UserState.INVITED })).users.length, 5);
    assert.deepEqual((await lister.users.listUsers({ roleId: "system:developer" })).users.map((u) => u.email), ["bob@two.test"]);
    assert.deepEqual((await lister.users.listUsers({ emailPrefix: "ANN" })).users.map((u) => u.email), ["anna@one.test", "ann@one.test"]);
    assert.deepEqual((await lister.users.listUsers({ emailPrefix: "a_b" })).users.map((u) => u.email), ["a_b@three.test"]);
    assert.equal((await lister.users.listUsers({ emailPrefix: "%" })).users.length, 0);
    assert.equal((await lister.users.listUsers({ roleId: "system:member", state: UserState.ACTIVE, emailPrefix: "carol" })).users.length, 1);
  });

  test("ListUsers refuses a page token from other filters or not its own with INVALID_ARGUMENT naming page_token", async () => {
    const { nextPageToken } = await lister.users.listUsers({ pageSize: 1 });
    await refusedWith(lister.users.listUsers({ pageSize: 1, pageToken: nextPageToken, state: UserState.ACTIVE }), Code.InvalidArgument, "page_token");
    await refusedWith(lister.users.listUsers({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
  });

  test("ListUsers refuses a page_size over 500 or an undefined state with INVALID_ARGUMENT", async () => {
    await refusedWith(lister.users.listUsers({ pageSize: 501 }), Code.InvalidArgument, "page_size");
    await refusedWith(lister.users.listUsers({ state: 9 as UserState }), Code.InvalidArgument, "state");
  });

  test("ListUsers refuses a caller without identity.users.list with PERMISSION_DENIED", async () => {
    await refusedWith(principalOf(mesh, tenant, ["identity.users.read"]).users.listUsers({}), Code.PermissionDenied, "identity.users.list");
    await refusedWith(clientsWith(mesh, undefined).users.listUsers({}), Code.Unauthenticated);
  });
});

describe("UpdateUser", () => {
  test("UpdateUser changes display_name and records user.updated naming it", async () => {
    const target = await activeUser(mesh, tenantA);
    const { user } = await adminA.users.updateUser({ userId: target.id, displayName: "Renamed", updateMask: { paths: ["display_name"] } });
    assert.equal(user?.displayName, "Renamed");
    assert.equal((await adminA.users.getUser({ userId: target.id })).user?.displayName, "Renamed");
    const event = (await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === target.id && e.type === "user.updated");
    assert.equal(event.length, 1);
    assert.deepEqual(fromBinary(UserUpdatedSchema, event[0]!.payload).changedFields, ["display_name"]);
  });

  test("UpdateUser refuses a path it cannot change or an empty display_name with INVALID_ARGUMENT", async () => {
    await refusedWith(adminA.users.updateUser({ userId: ownerA.id, displayName: "X", updateMask: { paths: ["email"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(adminA.users.updateUser({ userId: ownerA.id, displayName: "", updateMask: { paths: ["display_name"] } }), Code.InvalidArgument, "display_name");
    await refusedWith(adminA.users.updateUser({ userId: ownerA.id, displayName: "X" }), Code.InvalidArgument, "update_mask");
  });

  test("UpdateUser answers NOT_FOUND for another tenant's or a missing user", async () => {
    await refusedWith(adminA.users.updateUser({ userId: userB.id, displayName: "Hijack", updateMask: { paths: ["display_name"] } }), Code.NotFound);
    await refusedWith(adminA.users.updateUser({ userId: missingUser, displayName: "X", updateMask: { paths: ["display_name"] } }), Code.NotFound);
  });

  test("UpdateUser refuses a caller without identity.users.update with PERMISSION_DENIED", async () => {
    await refusedWith(nobodyA.users.updateUser({ userId: ownerA.id, displayName: "X", updateMask: { paths: ["display_name"] } }), Code.PermissionDenied);
  });
});

describe("SuspendUser and ReactivateUser", () => {
  test("SuspendUser suspends and records user.suspended with the reason; ReactivateUser makes the user active again", async () => {
    const target = await activeUser(mesh, tenantA);
    const { user } = await adminA.users.suspendUser({ userId: target.id, reason: "laptop stolen" });
    assert.equal(user?.state, UserState.SUSPENDED);
    const suspended = (await eventsOf(mesh, tenantA)).find((e) => e.aggregateId === target.id && e.type === "user.suspended");
    assert.equal(fromBinary(UserSuspendedSchema, suspended!.payload).reason, "laptop stolen");
    const { user: back } = await adminA.users.reactivateUser({ userId: target.id });
    assert.equal(back?.state, UserState.ACTIVE);
    assert.deepEqual(await eventTypesFor(mesh, tenantA, target.id), ["user.invited", "user.invitation_token_revealed", "user.activated", "user.suspended", "user.reactivated"]);
  });

  test("ReactivateUser returns an invitee suspended before accepting to INVITED", async () => {
    const { user } = await invite(mesh, tenantA);
    await adminA.users.suspendUser({ userId: user.id, reason: "" });
    assert.equal((await adminA.users.reactivateUser({ userId: user.id })).user?.state, UserState.INVITED);
  });

  test("SuspendUser refuses an already suspended user and ReactivateUser one who is not suspended with FAILED_PRECONDITION", async () => {
    const target = await activeUser(mesh, tenantA);
    await refusedWith(adminA.users.reactivateUser({ userId: target.id }), Code.FailedPrecondition, "not suspended");
    await adminA.users.suspendUser({ userId: target.id, reason: "" });
    await refusedWith(adminA.users.suspendUser({ userId: target.id, reason: "" }), Code.FailedPrecondition, "already suspended");
  });

  test("SuspendUser refuses the tenant's last active owner with FAILED_PRECONDITION, and allows it once another owner is active", async () => {
    const tenant = await newTenant(mesh);
    const first = await activeUser(mesh, tenant, ["system:owner"]);
    const ops = operatorIn(mesh, tenant);
    await refusedWith(ops.users.suspendUser({ userId: first.id, reason: "" }), Code.FailedPrecondition, "last active owner");
    const invitedOwner = await invite(mesh, tenant, ["system:owner"]);
    await refusedWith(ops.users.suspendUser({ userId: first.id, reason: "" }), Code.FailedPrecondition, "last active owner");
    await ops.users.acceptInvitation({ invitationToken: invitedOwner.token, password: strongPassword() });
    assert.equal((await ops.users.suspendUser({ userId: first.id, reason: "" })).user?.state, UserState.SUSPENDED);
    await refusedWith(ops.users.suspendUser({ userId: invitedOwner.user.id, reason: "" }), Code.FailedPrecondition, "last active owner");
  });

  test("SuspendUser and ReactivateUser answer NOT_FOUND for another tenant's user", async () => {
    await refusedWith(adminA.users.suspendUser({ userId: userB.id, reason: "" }), Code.NotFound);
    await refusedWith(adminA.users.reactivateUser({ userId: userB.id }), Code.NotFound);
  });

  test("SuspendUser and ReactivateUser refuse a caller without identity.users.suspend with PERMISSION_DENIED, and a too long reason with INVALID_ARGUMENT", async () => {
    await refusedWith(nobodyA.users.suspendUser({ userId: ownerA.id, reason: "" }), Code.PermissionDenied, "identity.users.suspend");
    await refusedWith(nobodyA.users.reactivateUser({ userId: ownerA.id }), Code.PermissionDenied, "identity.users.suspend");
    await refusedWith(adminA.users.suspendUser({ userId: ownerA.id, reason: "x".repeat(501) }), Code.InvalidArgument, "reason");
  });
});

describe("DeleteUser", () => {
  test("DeleteUser removes the user, their roles and invitation, records user.deleted, and frees the email", async () => {
    const email = uniqueEmail("gone");
    const target = await activeUser(mesh, tenantA, ["system:developer"], email);
    await adminA.users.deleteUser({ userId: target.id });
    await refusedWith(adminA.users.getUser({ userId: target.id }), Code.NotFound);
    assert.equal((await identityQuery(mesh, "select 1 from $schema.user_roles where user_id = $1 union all select 1 from $schema.invitations where user_id = $1", [target.id])).length, 0);
    assert.equal((await eventTypesFor(mesh, tenantA, target.id)).at(-1), "user.deleted");
    assert.equal((await adminA.users.createUser({ email, displayName: "Again" })).user?.email, email);
  });

  test("DeleteUser refuses the tenant's last active owner with FAILED_PRECONDITION", async () => {
    await refusedWith(ownerLevel().users.deleteUser({ userId: ownerA.id }), Code.FailedPrecondition, "last active owner");
  });

  test("DeleteUser answers NOT_FOUND for another tenant's or a missing user and leaves it alone", async () => {
    await refusedWith(adminA.users.deleteUser({ userId: userB.id }), Code.NotFound);
    await refusedWith(adminA.users.deleteUser({ userId: missingUser }), Code.NotFound);
    assert.equal((await operatorIn(mesh, tenantB).users.getUser({ userId: userB.id })).user?.id, userB.id);
  });

  test("DeleteUser refuses a caller without identity.users.delete with PERMISSION_DENIED", async () => {
    await refusedWith(nobodyA.users.deleteUser({ userId: ownerA.id }), Code.PermissionDenied, "identity.users.delete");
  });
});

describe("sessions of suspended, deleted and offboarded users", () => {
  /** A user of a fresh tenant who has signed in (one live session). */
  async function signedInUser(): Promise<{ tenant: string; user: User; sessionId: string; successor: User }> {
    const { tenant } = await mesh.tenancyOps.createTenant({ slug: uniqueSlug("ses"), displayName: "Sessions Co", region: Region.EU });
    const ops = operatorIn(mesh, tenant!.id);
    const email = uniqueEmail("ses");
    const password = strongPassword();
    const { user, invitationToken } = await ops.users.createUser({ email, displayName: "Session Holder", returnInvitationToken: true });
    await ops.users.acceptInvitation({ invitationToken, password });
    const res = await clientFor(AuthService, mesh.identity.baseUrl).signIn({ tenantSlug: tenant!.slug, email, password, device: "laptop" });
    assert.equal(res.result.case, "tokens");
    return { tenant: tenant!.id, user: user!, sessionId: res.result.value.sessionId, successor: await activeUser(mesh, tenant!.id) };
  }

  async function revokeReason(sessionId: string): Promise<string | null> {
    const [row] = await identityQuery<{ revoke_reason: string | null }>(mesh, "select revoke_reason from $schema.sessions where id = $1", [sessionId]);
    return row?.revoke_reason ?? null;
  }

  test("SuspendUser revokes the user's sessions in the same transaction and records session.revoked", async () => {
    const { tenant, user, sessionId } = await signedInUser();
    await operatorIn(mesh, tenant).users.suspendUser({ userId: user.id, reason: "incident" });
    assert.equal(await revokeReason(sessionId), "user_suspended");
    assert.ok((await eventsOf(mesh, tenant)).some((e) => e.type === "session.revoked" && e.aggregateId === sessionId));
  });

  test("OffboardUser reports how many sessions it revoked", async () => {
    const { tenant, user, sessionId, successor } = await signedInUser();
    const res = await operatorIn(mesh, tenant).users.offboardUser({ userId: user.id, successorUserId: successor.id });
    assert.equal(res.revokedSessions, 1);
    assert.ok((await eventsOf(mesh, tenant)).some((e) => e.type === "session.revoked" && e.aggregateId === sessionId));
  });

  test("DeleteUser records session.revoked for each of the user's sessions", async () => {
    const { tenant, user, sessionId } = await signedInUser();
    await operatorIn(mesh, tenant).users.deleteUser({ userId: user.id });
    assert.ok((await eventsOf(mesh, tenant)).some((e) => e.type === "session.revoked" && e.aggregateId === sessionId));
  });
});

describe("OffboardUser", () => {
  test("OffboardUser suspends, announces the session revocation, hands resources to the successor and deletes, one event per step", async () => {
    const leaver = await activeUser(mesh, tenantA, ["system:developer"]);
    const successor = await activeUser(mesh, tenantA);
    const res = await adminA.users.offboardUser({ userId: leaver.id, successorUserId: successor.id });
    assert.equal(res.revokedSessions, 0);
    assert.equal(res.transferredResources, 0);
    await refusedWith(adminA.users.getUser({ userId: leaver.id }), Code.NotFound);
    const events = (await eventsOf(mesh, tenantA)).filter((e) => e.aggregateId === leaver.id);
    assert.deepEqual(new Set(events.map((e) => e.type)), new Set(["user.invited", "user.invitation_token_revealed", "user.activated", "user.suspended", "user.sessions_revoked", "user.resources_transferred", "user.deleted"]));
    const transferred = fromBinary(UserResourcesTransferredSchema, events.find((e) => e.type === "user.resources_transferred")!.payload);
    assert.deepEqual({ userId: transferred.userId, successorUserId: transferred.successorUserId }, { userId: leaver.id, successorUserId: successor.id });
    const revoked = fromBinary(SessionRevokedSchema, events.find((e) => e.type === "user.sessions_revoked")!.payload);
    assert.equal(revoked.userId, leaver.id);
    assert.equal(revoked.reason, "user_deleted");
    assert.ok(revoked.validUntilUnix > BigInt(Math.floor(Date.now() / 1000)));
  });

  test("OffboardUser refuses the user as their own successor with INVALID_ARGUMENT naming successor_user_id", async () => {
    const leaver = await activeUser(mesh, tenantA);
    await refusedWith(adminA.users.offboardUser({ userId: leaver.id, successorUserId: leaver.id }), Code.InvalidArgument, "successor_user_id");
    await refusedWith(adminA.users.offboardUser({ userId: leaver.id, successorUserId: "" }), Code.InvalidArgument, "successor_user_id");
  });

  test("OffboardUser answers NOT_FOUND for a missing or another tenant's user or successor", async () => {
    const leaver = await activeUser(mesh, tenantA);
    await refusedWith(adminA.users.offboardUser({ userId: leaver.id, successorUserId: userB.id }), Code.NotFound, "successor");
    await refusedWith(adminA.users.offboardUser({ userId: userB.id, successorUserId: leaver.id }), Code.NotFound, "user");
    await refusedWith(adminA.users.offboardUser({ userId: missingUser, successorUserId: leaver.id }), Code.NotFound);
    assert.equal((await adminA.users.getUser({ userId: leaver.id })).user?.state, UserState.ACTIVE, "nothing happened");
  });

  test("OffboardUser refuses a successor who is not active with FAILED_PRECONDITION and changes nothing", async () => {
    const leaver = await activeUser(mesh, tenantA);
    const invited = await invite(mesh, tenantA);
    await refusedWith(adminA.users.offboardUser({ userId: leaver.id, successorUserId: invited.user.id }), Code.FailedPrecondition, "successor");
    const suspended = await activeUser(mesh, tenantA);
    await adminA.users.suspendUser({ userId: suspended.id, reason: "" });
    await refusedWith(adminA.users.offboardUser({ userId: leaver.id, successorUserId: suspended.id }), Code.FailedPrecondition, "successor");
    assert.equal((await adminA.users.getUser({ userId: leaver.id })).user?.state, UserState.ACTIVE);
  });

  test("OffboardUser refuses the tenant's last active owner with FAILED_PRECONDITION", async () => {
    const successor = await activeUser(mesh, tenantA);
    await refusedWith(ownerLevel().users.offboardUser({ userId: ownerA.id, successorUserId: successor.id }), Code.FailedPrecondition, "last active owner");
  });

  test("OffboardUser refuses a caller without identity.users.offboard with PERMISSION_DENIED", async () => {
    await refusedWith(principalOf(mesh, tenantA, userAdmin.filter((p) => p !== "identity.users.offboard")).users.offboardUser({ userId: ownerA.id, successorUserId: userB.id }), Code.PermissionDenied, "identity.users.offboard");
  });
});

describe("actions on a more privileged user", () => {
  const teamLead = systemRole("system:team_lead")!.permissions;
  const admin = systemRole("system:admin")!.permissions;

  /** A tenant with two active owners (so last-owner protection stays out of the way) and its operator. */
  async function coOwned(): Promise<{ tenant: string; owner: User; coOwner: User; ops: IdentityClients }> {
    const tenant = await newTenant(mesh);
    const [owner, coOwner] = await Promise.all([activeUser(mesh, tenant, ["system:owner"]), activeUser(mesh, tenant, ["system:owner"])]);
    return { tenant, owner, coOwner, ops: operatorIn(mesh, tenant) };
  }

  test("a team lead cannot change an owner's email", async () => {
    const { tenant, owner, ops } = await coOwned();
    const lead = principalOf(mesh, tenant, teamLead);
    await refusedWith(lead.users.requestEmailChange({ userId: owner.id, newEmail: uniqueEmail("attacker") }), Code.PermissionDenied, "which the caller lacks");
    const pending = await identityQuery(mesh, "select 1 from $schema.email_change_tokens where user_id = $1", [owner.id]);
    assert.equal(pending.length, 0, "no confirmation token was made");
    assert.equal((await ops.users.getUser({ userId: owner.id })).user?.email, owner.email);
    assert.ok(!(await eventTypesFor(mesh, tenant, owner.id)).includes("user.email_change_requested"));
  });

  test("a team lead cannot rename an admin, and still changes a member's email", async () => {
    const { tenant } = await coOwned();
    const [adminUser, member] = await Promise.all([activeUser(mesh, tenant, ["system:admin"]), activeUser(mesh, tenant)]);
    const lead = principalOf(mesh, tenant, teamLead);
    await refusedWith(lead.users.updateUser({ userId: adminUser.id, displayName: "Renamed", updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, "which the caller lacks");
    assert.ok((await lead.users.requestEmailChange({ userId: member.id, newEmail: uniqueEmail("moved") })).expireTime !== undefined);
  });

  test("an admin cannot suspend, reactivate, delete, offboard or rename an owner", async () => {
    const { tenant, owner, coOwner, ops } = await coOwned();
    const a = principalOf(mesh, tenant, [...admin, ...userAdmin]);
    const successor = await activeUser(mesh, tenant);
    await refusedWith(a.users.suspendUser({ userId: owner.id, reason: "takeover" }), Code.PermissionDenied, "identity.roles.assign_owner");
    await refusedWith(a.users.deleteUser({ userId: owner.id }), Code.PermissionDenied, "which the caller lacks");
    await refusedWith(a.users.offboardUser({ userId: owner.id, successorUserId: successor.id }), Code.PermissionDenied, "which the caller lacks");
    await refusedWith(a.users.updateUser({ userId: owner.id, displayName: "Mallory", updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, "which the caller lacks");
    await ops.users.suspendUser({ userId: coOwner.id, reason: "on leave" });
    await refusedWith(a.users.reactivateUser({ userId: coOwner.id }), Code.PermissionDenied, "which the caller lacks");
    const after = await ops.users.getUser({ userId: owner.id });
    assert.equal(after.user?.state, UserState.ACTIVE);
    assert.equal(after.user?.displayName, owner.displayName);
    assert.equal((await ops.users.getUser({ userId: coOwner.id })).user?.state, UserState.SUSPENDED);
  });

  test("an owner may suspend a co-owner and an admin another admin: equals are not more privileged", async () => {
    const { tenant, owner, coOwner } = await coOwned();
    assert.equal((await signedIn(mesh, owner).users.suspendUser({ userId: coOwner.id, reason: "" })).user?.state, UserState.SUSPENDED);
    const other = await activeUser(mesh, tenant, ["system:admin"]);
    assert.equal((await principalOf(mesh, tenant, [...admin, ...userAdmin]).users.suspendUser({ userId: other.id, reason: "" })).user?.state, UserState.SUSPENDED);
  });

  test("a user holding a custom role with a permission the caller lacks is out of the caller's reach", async () => {
    const { tenant, ops } = await coOwned();
    const { role } = await ops.roles.createRole({ name: "Shredders", permissions: ["keys.encryption.destroy"] });
    const target = await activeUser(mesh, tenant, ["system:member", role!.id]);
    const lead = principalOf(mesh, tenant, [...teamLead, "identity.users.suspend"]);
    await refusedWith(lead.users.suspendUser({ userId: target.id, reason: "" }), Code.PermissionDenied, "keys.encryption.destroy");
  });
});
