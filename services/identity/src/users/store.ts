import { LockMode } from "@mikro-orm/core";
import { currentContext, failedPrecondition, hasPermission, notFound, ownerRoleId, permissionDenied, systemRole, type RevokedSessions } from "@bulwark/core";
import type { TenancyClient } from "@bulwark/contracts";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { RoleEntity } from "../entities/role.entity.js";
import { UserRoleEntity } from "../entities/user-role.entity.js";
import { UserEntity, type User } from "../entities/user.entity.js";
import { permissionsOf } from "../auth/permissions-of.js";
import { userState } from "./mappers.js";

/**
 * Ends a user's sessions inside the caller's transaction. Sessions belong to
 * auth/ (registrations.ts plugs in its `revokeSessions`); without a revoker,
 * suspension, deletion and offboarding still publish their user events and
 * revocation is left to a consumer of those events.
 */
export interface SessionRevoker {
  /** Revokes every live session of `userId`, recording session.revoked for each, and returns how many there were. */
  revokeAllForUser(em: EntityManager, userId: string, reason: "user_suspended" | "user_deleted"): Promise<number>;
}

/**
 * The longest access-token lifetime a tenant policy allows (24 hours): a
 * revocation must be remembered this long when the tenant's own lifetime is
 * not at hand.
 */
export const maxAccessTokenLifetimeS = 86_400;

/** What UserService and RoleService need. */
export interface UsersDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  /** Tenancy, for the tenant's security policy and for checking an operator's target tenant. */
  readonly tenancy: Pick<TenancyClient, "getSecurityPolicy" | "getTenant">;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
  readonly now?: () => Date;
  readonly sessions?: SessionRevoker;
  /** This process's revocation set, told at once about reduced permissions. */
  readonly revoked?: RevokedSessions;
}

/** The user with this id in the tenant in scope (row-level security hides the others); NOT_FOUND otherwise. */
export async function loadUser(em: EntityManager, userId: string, lock?: "write" | "share", what = "user"): Promise<User> {
  const lockMode = lock === "write" ? LockMode.PESSIMISTIC_WRITE : lock === "share" ? LockMode.PESSIMISTIC_READ : undefined;
  const user = await em.findOne(UserEntity, { id: userId }, lockMode !== undefined ? { lockMode } : {});
  if (user === null) throw notFound(what);
  return user;
}

/** The ids of the roles each user holds. */
export async function roleIdsByUser(em: EntityManager, userIds: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(userIds.map((id) => [id, []]));
  if (userIds.length === 0) return out;
  for (const row of await em.find(UserRoleEntity, { userId: { $in: [...userIds] } })) out.get(row.userId)?.push(row.roleId);
  return out;
}

/** The ids of the roles one user holds. */
export async function roleIdsOf(em: EntityManager, userId: string): Promise<string[]> {
  return (await roleIdsByUser(em, [userId])).get(userId) ?? [];
}

/**
 * Locks every Owner assignment of the tenant in scope, and the owners' user
 * rows, and returns the ids of the owners who are ACTIVE. Every change that
 * could take away an active owner (revoking Owner, suspending, deleting,
 * offboarding, transferring ownership) calls it first in its transaction,
 * so two such changes to different owners run one after the other and the
 * second sees the first's result: the tenant never loses its last owner to
 * a race. Called before any other row lock, so the lock order is the same
 * everywhere.
 */
export async function lockActiveOwners(em: EntityManager): Promise<string[]> {
  const rows = await em.execute<{ user_id: string; state: string }[]>(
    "select ur.user_id, u.state from user_roles ur join users u on u.id = ur.user_id where ur.role_id = ? order by ur.user_id for update",
    [ownerRoleId],
  );
  return rows.filter((r) => r.state === userState.active).map((r) => r.user_id);
}

/** FAILED_PRECONDITION if `userId` is the only active owner among `activeOwners`. */
export function refuseLastOwner(activeOwners: readonly string[], userId: string): void {
  if (activeOwners.includes(userId) && activeOwners.length === 1) throw failedPrecondition("the user is the tenant's last active owner; make another user Owner first");
}

/** A role as assignments see it. */
export interface ResolvedRole {
  readonly id: string;
  readonly permissions: readonly string[];
  readonly system: boolean;
}

/**
 * The role with this id: a system role, or a custom role of the tenant in
 * scope (locked for share, so it cannot be deleted before the caller's
 * assignment commits). NOT_FOUND naming the id otherwise.
 */
export async function resolveRole(em: EntityManager, roleId: string, lockForShare = false): Promise<ResolvedRole> {
  const system = systemRole(roleId);
  if (system !== undefined) return { id: system.id, permissions: system.permissions, system: true };
  const custom = roleId.startsWith("rol_") ? await em.findOne(RoleEntity, { id: roleId }, lockForShare ? { lockMode: LockMode.PESSIMISTIC_READ } : {}) : null;
  if (custom === null) throw notFound(`role "${roleId.slice(0, 64)}"`);
  return { id: custom.id, permissions: custom.permissions, system: false };
}

/** True if the driver refused a write for a unique key. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Error && err.constructor.name === "UniqueConstraintViolationException";
}

/**
 * A caller may grant only permissions it holds itself — by assigning a
 * role, inviting a user with roles, creating a role or widening one:
 * without this, any holder of identity.roles.assign (a Team Lead) could make
 * themselves Admin, and a holder of identity.roles.manage could put every
 * permission into a role they hold. Platform principals hold every
 * permission (`*`). PERMISSION_DENIED naming the first missing permission;
 * `what` says which act needed it.
 */
export function refuseEscalation(permissions: Iterable<string>, what = "assigning this role"): void {
  const principal = currentContext()?.principal;
  if (principal === undefined) throw permissionDenied();
  for (const p of permissions) {
    if (!hasPermission(principal, p)) throw permissionDenied(`${what} needs every permission it grants; missing ${p}`);
  }
}

/**
 * The one rule for acting on another user: refused with PERMISSION_DENIED
 * when the target's effective permissions (every system and custom role
 * they hold, whatever their state) include one the caller lacks. Without
 * it a Team Lead could move an Owner's email to an address they control and
 * reset the password, and an Admin could reset an Owner's second factor or
 * suspend, delete or sign out the owners. Acting on oneself is not covered
 * here (the self-service RPCs ask for a recent authentication instead), and
 * platform principals pass (`*`). Call it inside the transaction that acts,
 * after locking the target's row, so a role granted meanwhile is seen.
 */
export async function refuseMorePrivilegedTarget(em: EntityManager, targetUserId: string): Promise<void> {
  const principal = currentContext()?.principal;
  if (principal === undefined) throw permissionDenied();
  if (principal.kind === "user" && principal.id === targetUserId) return;
  const { permissions } = await permissionsOf(em, targetUserId);
  const missing = permissions.find((p) => !hasPermission(principal, p));
  if (missing !== undefined) throw permissionDenied(`the user holds ${missing}, which the caller lacks; nobody may act on a user more privileged than themselves`);
}
