import type { ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { LockMode } from "@mikro-orm/core";
import {
  adminRoleId,
  alreadyExists,
  currentContext,
  effectivePermissions,
  failedPrecondition,
  hasPermission,
  invalidArgument,
  isCataloguePermission,
  newId,
  notFound,
  ownerRoleId,
  permissionCatalogue,
  permissionDenied,
  systemRole,
  systemRoles,
} from "@bulwark/core";
import {
  PermissionSchema,
  RoleAssignmentChangedSchema,
  RoleChangedSchema,
  RoleSchema,
  RoleService,
  type CreateRoleRequest,
  type UpdateRoleRequest,
} from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import { RoleEntity, type RoleRow } from "../entities/role.entity.js";
import { UserRoleEntity } from "../entities/user-role.entity.js";
import type { User } from "../entities/user.entity.js";
import { customRoleToProto, systemRoleToProto, userState, userToProto } from "./mappers.js";
import { tenantInScope } from "./scope.js";
import { isUniqueViolation, loadUser, lockActiveOwners, maxAccessTokenLifetimeS, refuseEscalation, refuseLastOwner, refuseMorePrivilegedTarget, resolveRole, roleIdsOf, type UsersDeps } from "./store.js";
import { reduceGrants, rememberReduced, type Reduced } from "../auth/grants.js";
import { permissionsOf } from "../auth/permissions-of.js";

const permissions = permissionCatalogue.map((p) => create(PermissionSchema, { name: p.name, description: p.description }));
const systemRoleNames = new Set(systemRoles.map((r) => r.name.toLowerCase()));

/** INVALID_ARGUMENT naming the first permission that is not in the catalogue. */
function checkPermissions(list: readonly string[]): string[] {
  if (list.length === 0) throw invalidArgument("permissions", "must name at least one permission");
  list.forEach((p, i) => {
    if (!isCataloguePermission(p)) throw invalidArgument(`permissions[${i}]`, `"${p.slice(0, 100)}" is not in the permission catalogue`);
  });
  return [...new Set(list)].sort();
}

/** INVALID_ARGUMENT for a blank name; ALREADY_EXISTS for a system role's name. */
function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed === "") throw invalidArgument("name", "must not be blank");
  if (systemRoleNames.has(trimmed.toLowerCase())) throw alreadyExists(`role named "${trimmed}"`);
  return trimmed;
}

/** FAILED_PRECONDITION for a system role id, NOT_FOUND for an unknown one. */
function refuseSystemRole(roleId: string): void {
  if (systemRole(roleId) !== undefined) throw failedPrecondition("system roles cannot be changed or deleted");
  if (!roleId.startsWith("rol_")) throw notFound(`role "${roleId.slice(0, 64)}"`);
}

/** PERMISSION_DENIED unless the caller may give or take the Owner role. */
function requireAssignOwner(): void {
  const principal = currentContext()?.principal;
  if (principal === undefined || !hasPermission(principal, "identity.roles.assign_owner")) throw permissionDenied("giving or taking the Owner role needs identity.roles.assign_owner");
}

/**
 * bulwark.identity.v1.RoleService: the permission catalogue, the system
 * roles, a tenant's custom roles and who holds which. A tenant always keeps
 * at least one active Owner: every change that could take the last one away
 * locks the tenant's owner rows first (see `lockActiveOwners`).
 */
export class RoleServiceImpl implements ServiceImpl<typeof RoleService> {
  readonly #deps: UsersDeps;
  readonly #now: () => Date;

  constructor(deps: UsersDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  listPermissions() {
    return { permissions };
  }

  async listRoles() {
    tenantInScope();
    const custom = await this.#deps.db.transaction((em) => em.find(RoleEntity, {}, { orderBy: { name: "asc", id: "asc" } }));
    return { roles: [...systemRoles.map(systemRoleToProto), ...custom.map(customRoleToProto)] };
  }

  async createRole(req: CreateRoleRequest) {
    const tenantId = tenantInScope();
    const name = checkName(req.name);
    const perms = checkPermissions(req.permissions);
    refuseEscalation(perms, "creating this role");
    const now = this.#now();
    const role = await this.#write(async (em) => {
      const row = em.create(RoleEntity, { id: newId("rol"), tenantId, name, description: req.description, permissions: perms, createdAt: now, updatedAt: now });
      await this.#flushName(em, name);
      const message = customRoleToProto(row);
      await this.#roleEvent(em, "created", message);
      return message;
    });
    return { role };
  }

  async updateRole(req: UpdateRoleRequest) {
    tenantInScope();
    refuseSystemRole(req.roleId);
    const paths = [...new Set(req.updateMask?.paths ?? [])];
    for (const path of paths) {
      if (path !== "name" && path !== "description" && path !== "permissions") throw invalidArgument("update_mask", `"${path.slice(0, 64)}" is not an updatable role field`);
    }
    const name = paths.includes("name") ? checkName(req.name) : undefined;
    const perms = paths.includes("permissions") ? checkPermissions(req.permissions) : undefined;
    const role = await this.#write(async (em, reduced) => {
      const r = await this.#loadCustom(em, req.roleId);
      // A role granting more than the caller holds is out of their reach
      // (its holders are more privileged), and the new set must be theirs too.
      refuseEscalation(r.permissions, "changing this role");
      if (perms !== undefined) refuseEscalation(perms, "changing this role");
      const before = JSON.stringify(customRoleToProto(r));
      const removed = perms === undefined ? [] : r.permissions.filter((p) => !perms.includes(p));
      if (name !== undefined) r.name = name;
      if (paths.includes("description")) r.description = req.description;
      if (perms !== undefined) r.permissions = perms;
      const message = customRoleToProto(r);
      if (JSON.stringify(message) === before) return message;
      r.updatedAt = this.#now();
      await this.#flushName(em, r.name);
      await this.#roleEvent(em, "updated", message);
      if (removed.length > 0) {
        // Every holder's live tokens still carry the removed permissions: outdate them.
        const holders = await em.execute<{ user_id: string }[]>("select user_id from user_roles where role_id = ?", [r.id]);
        reduced.push(...(await reduceGrants(em, this.#deps.events, holders.map((h) => h.user_id), "role_narrowed", maxAccessTokenLifetimeS)));
      }
      return message;
    });
    return { role };
  }

  async deleteRole(req: { roleId: string }) {
    tenantInScope();
    refuseSystemRole(req.roleId);
    await this.#write(async (em) => {
      const r = await this.#loadCustom(em, req.roleId);
      if ((await em.count(UserRoleEntity, { roleId: r.id })) > 0) throw failedPrecondition("the role is still assigned; revoke it from its holders first");
      em.remove(r);
      await em.flush();
      await this.#roleEvent(em, "deleted", create(RoleSchema, { id: r.id, tenantId: r.tenantId }));
    });
    return {};
  }

  async assignRole(req: { userId: string; roleId: string }) {
    const tenantId = tenantInScope();
    if (req.roleId === ownerRoleId) requireAssignOwner();
    const user = await this.#write(async (em) => {
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      const role = await resolveRole(em, req.roleId, true);
      refuseEscalation(role.permissions);
      const held = await roleIdsOf(em, u.id);
      if (held.includes(role.id)) return userToProto(u, held);
      return this.#grant(em, u, tenantId, role.id, "assigned", held);
    });
    return { user };
  }

  async revokeRole(req: { userId: string; roleId: string }) {
    tenantInScope();
    if (req.roleId === ownerRoleId) requireAssignOwner();
    const user = await this.#write(async (em, reduced) => {
      const owners = req.roleId === ownerRoleId ? await lockActiveOwners(em) : [];
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      const held = await roleIdsOf(em, u.id);
      if (!held.includes(req.roleId)) throw notFound(`role "${req.roleId.slice(0, 64)}" of the user`);
      if (req.roleId === ownerRoleId) refuseLastOwner(owners, u.id);
      const taken = await this.#take(em, u, req.roleId, "revoked", held);
      reduced.push(...(await reduceGrants(em, this.#deps.events, [u.id], "role_revoked", maxAccessTokenLifetimeS)));
      return taken;
    });
    return { user };
  }

  async transferOwnership(req: { newOwnerUserId: string }) {
    const tenantId = tenantInScope();
    const principal = currentContext()?.principal;
    if (principal?.kind !== "user") throw failedPrecondition("only an Owner signed in as a user can transfer ownership");
    if (principal.id === req.newOwnerUserId) throw invalidArgument("new_owner_user_id", "is the caller, who is already the Owner");
    return this.#write(async (em, reduced) => {
      const owners = await lockActiveOwners(em);
      if (!owners.includes(principal.id)) throw failedPrecondition("the caller is not an active Owner of the tenant");
      const caller = await loadUser(em, principal.id, "write");
      const next = await loadUser(em, req.newOwnerUserId, "write");
      await refuseMorePrivilegedTarget(em, next.id);
      if (next.state !== userState.active) throw failedPrecondition("the new owner is not an active user");
      let nextHeld = await roleIdsOf(em, next.id);
      if (!nextHeld.includes(ownerRoleId)) {
        em.create(UserRoleEntity, { userId: next.id, roleId: ownerRoleId, tenantId, createdAt: this.#now() });
        nextHeld = [...nextHeld, ownerRoleId];
        next.updatedAt = this.#now();
      }
      let callerHeld = (await roleIdsOf(em, caller.id)).filter((r) => r !== ownerRoleId);
      await em.nativeDelete(UserRoleEntity, { userId: caller.id, roleId: ownerRoleId });
      if (!callerHeld.includes(adminRoleId)) {
        em.create(UserRoleEntity, { userId: caller.id, roleId: adminRoleId, tenantId, createdAt: this.#now() });
        callerHeld = [...callerHeld, adminRoleId];
      }
      caller.updatedAt = this.#now();
      await em.flush();
      await this.#assignmentEvent(em, "ownership_transferred", next.id, ownerRoleId);
      await this.#assignmentEvent(em, "revoked", caller.id, ownerRoleId);
      await this.#assignmentEvent(em, "assigned", caller.id, adminRoleId);
      reduced.push(...(await reduceGrants(em, this.#deps.events, [caller.id], "ownership_transferred", maxAccessTokenLifetimeS)));
      return { newOwner: userToProto(next, nextHeld), previousOwner: userToProto(caller, callerHeld) };
    });
  }

  /**
   * Whether the user holds the permission through any of their roles. Only
   * an ACTIVE user holds anything: an invited or suspended user is refused
   * every call, so the answer for them is false.
   */
  async checkPermission(req: { userId: string; permission: string }) {
    tenantInScope();
    if (!isCataloguePermission(req.permission)) throw invalidArgument("permission", "is not in the permission catalogue");
    return this.#deps.db.transaction(async (em) => {
      const u = await loadUser(em, req.userId);
      if (u.state !== userState.active) return { allowed: false };
      const held = await roleIdsOf(em, u.id);
      const customIds = held.filter((id) => id.startsWith("rol_"));
      const custom = customIds.length > 0 ? await em.find(RoleEntity, { id: { $in: customIds } }) : [];
      return { allowed: effectivePermissions(held, custom).has(req.permission) };
    });
  }

  /**
   * What a user of the tenant holds now and their permission epoch, for
   * services that act for a user (keys bounds an API key by its creator's
   * current permissions). Only an ACTIVE user holds anything.
   */
  async getUserPermissions(req: { userId: string }) {
    tenantInScope();
    return this.#deps.db.transaction(async (em) => {
      const u = await loadUser(em, req.userId);
      const grants = await permissionsOf(em, u.id);
      const active = u.state === userState.active;
      return { active, permissions: active ? grants.permissions : [], permissionEpoch: BigInt(grants.permissionEpoch) };
    });
  }

  /**
   * A write transaction in the tenant in scope; publishes its events right
   * after commit, and tells this process's revocation set about the
   * reductions the transaction pushed into `reduced`.
   */
  async #write<T>(fn: (em: EntityManager, reduced: Reduced[]) => Promise<T>): Promise<T> {
    const reduced: Reduced[] = [];
    const result = await this.#deps.db.transaction((em) => fn(em, reduced));
    rememberReduced(this.#deps.revoked, reduced);
    this.#deps.afterCommit?.();
    return result;
  }

  async #loadCustom(em: EntityManager, roleId: string): Promise<RoleRow> {
    const r = await em.findOne(RoleEntity, { id: roleId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (r === null) throw notFound(`role "${roleId.slice(0, 64)}"`);
    return r;
  }

  /** Flushes a role write; ALREADY_EXISTS if the name is taken in the tenant. */
  async #flushName(em: EntityManager, name: string): Promise<void> {
    try {
      await em.flush();
    } catch (err) {
      if (isUniqueViolation(err)) throw alreadyExists(`role named "${name}"`);
      throw err;
    }
  }

  async #grant(em: EntityManager, u: User, tenantId: string, roleId: string, verb: string, held: readonly string[]) {
    const now = this.#now();
    em.create(UserRoleEntity, { userId: u.id, roleId, tenantId, createdAt: now });
    u.updatedAt = now;
    await em.flush();
    await this.#assignmentEvent(em, verb, u.id, roleId);
    return userToProto(u, [...held, roleId]);
  }

  async #take(em: EntityManager, u: User, roleId: string, verb: string, held: readonly string[]) {
    await em.nativeDelete(UserRoleEntity, { userId: u.id, roleId });
    u.updatedAt = this.#now();
    await em.flush();
    await this.#assignmentEvent(em, verb, u.id, roleId);
    return userToProto(u, held.filter((r) => r !== roleId));
  }

  async #roleEvent(em: EntityManager, verb: string, role: ReturnType<typeof customRoleToProto>): Promise<void> {
    await this.#deps.events.publish(em, { aggregate: "role", verb, aggregateId: role.id, schema: RoleChangedSchema, payload: { $typeName: RoleChangedSchema.typeName, role } });
  }

  async #assignmentEvent(em: EntityManager, verb: string, userId: string, roleId: string): Promise<void> {
    await this.#deps.events.publish(em, { aggregate: "role", verb, aggregateId: userId, schema: RoleAssignmentChangedSchema, payload: { $typeName: RoleAssignmentChangedSchema.typeName, userId, roleId } });
  }
}

