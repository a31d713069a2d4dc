import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { LockMode } from "@mikro-orm/core";
import {
  decodeCursor,
  encodeCursor,
  alreadyExists,
  currentContext,
  failedPrecondition,
  hasPermission,
  invalidArgument,
  isPlatformPrincipal,
  memberRoleId,
  newId,
  ownerRoleId,
  permissionDenied,
  runAsPlatform,
  runInTenant,
} from "@bulwark/core";
import {
  SessionRevokedSchema,
  UserActivatedSchema,
  UserDeletedSchema,
  UserEmailChangedSchema,
  UserEmailChangeRequestedSchema,
  UserInvitationTokenRevealedSchema,
  UserInactivityWarnedSchema,
  UserInvitedSchema,
  UserReactivatedSchema,
  UserResourcesTransferredSchema,
  UserService,
  UserState,
  UserSuspendedSchema,
  UserUpdatedSchema,
  type AcceptInvitationRequest,
  type ConfirmEmailChangeRequest,
  type CreateUserRequest,
  type ListUsersRequest,
  type OffboardUserRequest,
  type RequestEmailChangeRequest,
  type UpdateUserRequest,
  type WarnInactiveUserRequest,
} from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import { asIdentityIn } from "../auth/policy.js";
import { requireRecentAuthentication } from "../auth/step-up.js";
import { InvitationEntity } from "../entities/invitation.entity.js";
import { UserRoleEntity } from "../entities/user-role.entity.js";
import { UserEntity, type User } from "../entities/user.entity.js";
import { emailChangeLifetimeMs, emailChangeSinkOf, hashEmailChangeToken, newEmailChangeToken } from "./email-change.js";
import { hashInvitationToken, invitationLifetimeMs, invitationSinkOf, newInvitationToken, type InvitationDelivery } from "./invitation-token.js";
import { userState, userToProto } from "./mappers.js";
import { checkNewPassword, hashPassword } from "./password.js";
import { tenantInScope } from "./scope.js";
import { isUniqueViolation, loadUser, lockActiveOwners, maxAccessTokenLifetimeS, refuseEscalation, refuseLastOwner, refuseMorePrivilegedTarget, resolveRole, roleIdsByUser, roleIdsOf, type UsersDeps } from "./store.js";

/** The one answer for an invitation token that is unknown, used or expired. */
const invalidInvitation = (): Error => failedPrecondition("the invitation is unknown, used or expired");

/** The one answer for an email change token that is unknown, used or expired. */
const invalidEmailChange = (): Error => failedPrecondition("the email change token is unknown, used or expired");

/** Lower-cases an email the way it is stored (unique per tenant). */
function normalEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Escapes LIKE wildcards so an email prefix matches literally. */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * bulwark.identity.v1.UserService: the users of a tenant and their
 * lifecycle (invited → active ⇄ suspended → deleted). Requests arrive
 * validated and authorized; every call acts in the tenant in scope, and
 * row-level security makes another tenant's user NOT_FOUND.
 */
export class UserServiceImpl implements ServiceImpl<typeof UserService> {
  readonly #deps: UsersDeps;
  readonly #now: () => Date;

  constructor(deps: UsersDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  async createUser(req: CreateUserRequest) {
    const tenantId = tenantInScope();
    const principal = currentContext()?.principal;
    const roleIds = req.roleIds.length > 0 ? [...new Set(req.roleIds)] : [memberRoleId];
    if (roleIds.includes(ownerRoleId) && (principal === undefined || !hasPermission(principal, "identity.roles.assign_owner"))) {
      throw permissionDenied("assigning the Owner role needs identity.roles.assign_owner");
    }
    // An operator names the tenant in a header: make sure it exists before
    // creating its first users (a tenant principal's tenant exists).
    if (principal !== undefined && isPlatformPrincipal(principal)) await this.#deps.tenancy.getTenant({ tenantId });
    const email = normalEmail(req.email);
    const token = newInvitationToken();
    const now = this.#now();
    const expiresAt = new Date(now.getTime() + invitationLifetimeMs);
    const { user, delivery } = await this.#write(async (em) => {
      for (const roleId of roleIds) refuseEscalation((await resolveRole(em, roleId, true)).permissions);
      const row = em.create(UserEntity, {
        id: newId("usr"),
        tenantId,
        email,
        displayName: req.displayName,
        state: userState.invited,
        passwordHash: null,
        mfaEnrolled: false,
        createdAt: now,
        updatedAt: now,
        lastSignInAt: null,
        lastActivityAt: null,
      });
      try {
        await em.flush();
      } catch (err) {
        if (isUniqueViolation(err)) throw alreadyExists(`user with email "${email}"`);
        throw err;
      }
      for (const roleId of roleIds) em.create(UserRoleEntity, { userId: row.id, roleId, tenantId, createdAt: now });
      em.create(InvitationEntity, { id: newId("inv"), tenantId, userId: row.id, tokenHash: hashInvitationToken(token), createdAt: now, expiresAt, usedAt: null });
      await em.flush();
      const message = userToProto(row, roleIds);
      await this.#deps.events.publish(em, { aggregate: "user", verb: "invited", aggregateId: row.id, schema: UserInvitedSchema, payload: { $typeName: UserInvitedSchema.typeName, user: message } });
      if (req.returnInvitationToken) {
        // Who saw the token, for the audit trail; never the token itself.
        await this.#deps.events.publish(em, {
          aggregate: "user",
          verb: "invitation_token_revealed",
          aggregateId: row.id,
          schema: UserInvitationTokenRevealedSchema,
          payload: { $typeName: UserInvitationTokenRevealedSchema.typeName, userId: row.id, revealedTo: principal?.id ?? "" },
        });
      }
      const delivery: InvitationDelivery = { tenantId, userId: row.id, email, displayName: row.displayName, token, expiresAt };
      return { user: message, delivery };
    });
    // The sink logs its own failures; the caller learns nothing about delivery.
    void invitationSinkOf(this.#deps.db)
      .deliver(delivery)
      .catch(() => undefined);
    return { user, invitationToken: req.returnInvitationToken ? token : "" };
  }

  async acceptInvitation(req: AcceptInvitationRequest) {
    const tokenHash = hashInvitationToken(req.invitationToken);
    // The token is the only credential and names no tenant: find its tenant
    // by hash across tenants, then do everything else inside that tenant.
    const found = await runAsPlatform("accept an invitation", () =>
      this.#deps.db.transaction((em) => em.findOne(InvitationEntity, { tokenHash }, { fields: ["tenantId", "userId", "expiresAt", "usedAt"] })),
    );
    if (found === null || found.usedAt !== null || found.expiresAt.getTime() <= this.#now().getTime()) throw invalidInvitation();
    const { tenantId, userId } = found;
    return runInTenant(tenantId, async () => {
      const invited = await this.#deps.db.transaction((em) => em.findOne(UserEntity, { id: userId }));
      if (invited === null || invited.state !== userState.invited) throw invalidInvitation();
      // The invitee is anonymous until accepted: identity reads the policy as itself.
      const { policy } = await asIdentityIn(tenantId, () => this.#deps.tenancy.getSecurityPolicy({ tenantId }));
      if (policy === undefined) throw failedPrecondition("the tenant has no security policy");
      await checkNewPassword({ password: req.password, policy, email: invited.email, displayName: invited.displayName });
      const passwordHash = await hashPassword(req.password);
      const user = await this.#write(async (em) => {
        const invitation = await em.findOne(InvitationEntity, { tokenHash }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        const now = this.#now();
        if (invitation === null || invitation.usedAt !== null || invitation.expiresAt.getTime() <= now.getTime()) throw invalidInvitation();
        const u = await em.findOne(UserEntity, { id: userId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        if (u === null || u.state !== userState.invited) throw invalidInvitation();
        invitation.usedAt = now;
        u.passwordHash = passwordHash;
        u.state = userState.active;
        u.updatedAt = now;
        await em.flush();
        const message = userToProto(u, await roleIdsOf(em, u.id));
        await this.#deps.events.publish(em, { aggregate: "user", verb: "activated", aggregateId: u.id, schema: UserActivatedSchema, payload: { $typeName: UserActivatedSchema.typeName, user: message } });
        return message;
      });
      return { user };
    });
  }

  async getUser(req: { userId: string }) {
    tenantInScope();
    const user = await this.#deps.db.transaction(async (em) => {
      const u = await loadUser(em, req.userId);
      return userToProto(u, await roleIdsOf(em, u.id));
    });
    return { user };
  }

  async listUsers(req: ListUsersRequest) {
    tenantInScope();
    const pageSize = req.pageSize === 0 ? 50 : req.pageSize;
    const emailPrefix = normalEmail(req.emailPrefix);
    const filter = `${req.state}:${req.roleId}:${emailPrefix}`;
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, filter, "usr_");
    return this.#deps.db.transaction(async (em) => {
      const qb = em
        .createQueryBuilder(UserEntity, "u")
        .select("*")
        .where({
          ...(req.state !== UserState.UNSPECIFIED ? { state: UserState[req.state] } : {}),
          ...(emailPrefix !== "" ? { email: { $like: likePrefix(emailPrefix) } } : {}),
          ...(cursor ? { $or: [{ createdAt: { $lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { $lt: cursor.id } }] } : {}),
        })
        .orderBy([{ createdAt: "desc" }, { id: "desc" }])
        .limit(pageSize + 1);
      if (req.roleId !== "") qb.andWhere("u.id in (select ur.user_id from user_roles ur where ur.role_id = ?)", [req.roleId]);
      const rows = await qb.getResultList();
      const page = rows.slice(0, pageSize);
      const roles = await roleIdsByUser(em, page.map((u) => u.id));
      const last = page.at(-1);
      const nextPageToken = rows.length > pageSize && last !== undefined ? encodeCursor({ createdAt: last.createdAt, id: last.id, filter }) : "";
      return { users: page.map((u) => userToProto(u, roles.get(u.id) ?? [])), nextPageToken };
    });
  }

  async updateUser(req: UpdateUserRequest) {
    tenantInScope();
    const paths = [...new Set(req.updateMask?.paths ?? [])];
    for (const path of paths) {
      if (path !== "display_name") throw invalidArgument("update_mask", `"${path.slice(0, 64)}" is not an updatable user field`);
    }
    if (paths.includes("display_name") && req.displayName.trim() === "") throw invalidArgument("display_name", "is required when named in update_mask");
    const user = await this.#write(async (em) => {
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      const changed: string[] = [];
      if (paths.includes("display_name") && u.displayName !== req.displayName) {
        u.displayName = req.displayName;
        changed.push("display_name");
      }
      if (changed.length > 0) {
        u.updatedAt = this.#now();
        await em.flush();
      }
      const message = userToProto(u, await roleIdsOf(em, u.id));
      if (changed.length > 0) {
        await this.#deps.events.publish(em, { aggregate: "user", verb: "updated", aggregateId: u.id, schema: UserUpdatedSchema, payload: { $typeName: UserUpdatedSchema.typeName, user: message, changedFields: changed } });
      }
      return message;
    });
    return { user };
  }

  async suspendUser(req: { userId: string; reason: string }) {
    tenantInScope();
    const user = await this.#write(async (em) => {
      const owners = await lockActiveOwners(em);
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      if (u.state === userState.suspended) throw failedPrecondition("the user is already suspended");
      refuseLastOwner(owners, u.id);
      return this.#suspend(em, u, req.reason, "user_suspended");
    });
    return { user };
  }

  async reactivateUser(req: { userId: string }) {
    tenantInScope();
    const user = await this.#write(async (em) => {
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      if (u.state !== userState.suspended) throw failedPrecondition("the user is not suspended");
      // A user suspended before accepting their invitation has no password yet.
      u.state = u.passwordHash === null ? userState.invited : userState.active;
      u.updatedAt = this.#now();
      await em.flush();
      const message = userToProto(u, await roleIdsOf(em, u.id));
      await this.#deps.events.publish(em, { aggregate: "user", verb: "reactivated", aggregateId: u.id, schema: UserReactivatedSchema, payload: { $typeName: UserReactivatedSchema.typeName, user: message } });
      return message;
    });
    return { user };
  }

  async deleteUser(req: { userId: string }) {
    tenantInScope();
    await this.#write(async (em) => {
      const owners = await lockActiveOwners(em);
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      refuseLastOwner(owners, u.id);
      await this.#deps.sessions?.revokeAllForUser(em, u.id, "user_deleted");
      await this.#delete(em, u);
    });
    return {};
  }

  async offboardUser(req: OffboardUserRequest) {
    tenantInScope();
    if (req.successorUserId === req.userId) throw invalidArgument("successor_user_id", "must be another user than user_id");
    return this.#write(async (em) => {
      const owners = await lockActiveOwners(em);
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      const successor = await loadUser(em, req.successorUserId, "share", "successor");
      if (successor.state !== userState.active) throw failedPrecondition("the successor is not an active user");
      refuseLastOwner(owners, u.id);
      // 1. Suspend: sign-ins refused, keys revokes the user's API keys.
      if (u.state !== userState.suspended) await this.#suspend(em, u, "offboarded", null);
      // 2. Sessions: each revoked (session.revoked), then the step itself for the audit trail.
      const revokedSessions = (await this.#deps.sessions?.revokeAllForUser(em, u.id, "user_deleted")) ?? 0;
      await this.#deps.events.publish(em, {
        aggregate: "user",
        verb: "sessions_revoked",
        aggregateId: u.id,
        schema: SessionRevokedSchema,
        payload: { $typeName: SessionRevokedSchema.typeName, sessionId: "", userId: u.id, reason: "user_deleted", validUntilUnix: BigInt(Math.ceil(this.#now().getTime() / 1000) + maxAccessTokenLifetimeS) },
      });
      // 3. Resources: every service owning per-user resources hands them over on this event.
      await this.#deps.events.publish(em, {
        aggregate: "user",
        verb: "resources_transferred",
        aggregateId: u.id,
        schema: UserResourcesTransferredSchema,
        payload: { $typeName: UserResourcesTransferredSchema.typeName, userId: u.id, successorUserId: successor.id },
      });
      // 4. Delete.
      await this.#delete(em, u);
      return { revokedSessions, transferredResources: 0 };
    });
  }

  /**
   * Stores a new confirmation token (superseding the user's pending ones),
   * records user.email_change_requested with both addresses but never the
   * token, and after commit hands the token to the email-change sink, which
   * mails it to the new address only.
   */
  async requestEmailChange(req: RequestEmailChangeRequest) {
    const tenantId = tenantInScope();
    const principal = currentContext()?.principal;
    // One's own email moves the account (reset mails follow it): step-up, as for a new credential.
    if (principal?.kind === "user" && principal.id === req.userId) await requireRecentAuthentication(this.#deps.tenancy, "changing your own email");
    const newEmail = normalEmail(req.newEmail);
    const token = newEmailChangeToken();
    const now = this.#now();
    const expiresAt = new Date(now.getTime() + emailChangeLifetimeMs);
    const delivery = await this.#write(async (em) => {
      const u = await loadUser(em, req.userId, "write");
      await refuseMorePrivilegedTarget(em, u.id);
      if (u.email === newEmail) throw invalidArgument("new_email", "is the user's current email");
      if ((await em.count(UserEntity, { email: newEmail })) > 0) throw alreadyExists(`user with email "${newEmail}"`);
      await em.execute("update email_change_tokens set used_at = ? where user_id = ? and used_at is null", [now, u.id]);
      await em.execute("insert into email_change_tokens (hash, tenant_id, user_id, new_email, created_at, expires_at, used_at) values (?, ?, ?, ?, ?, ?, null)", [
        hashEmailChangeToken(token),
        tenantId,
        u.id,
        newEmail,
        now,
        expiresAt,
      ]);
      await this.#deps.events.publish(em, {
        aggregate: "user",
        verb: "email_change_requested",
        aggregateId: u.id,
        schema: UserEmailChangeRequestedSchema,
        payload: { $typeName: UserEmailChangeRequestedSchema.typeName, userId: u.id, currentEmail: u.email, newEmail },
      });
      return { tenantId, userId: u.id, newEmail, displayName: u.displayName, token, expiresAt };
    });
    // The sink logs its own failures; the caller learns nothing about delivery.
    void emailChangeSinkOf(this.#deps.db)
      .deliver(delivery)
      .catch(() => undefined);
    return { expireTime: timestampFromDate(expiresAt) };
  }

  /**
   * Finds the token's tenant by hash across tenants (the token names none),
   * then in that tenant consumes it and every other pending change of the
   * user, and sets the new email; the unique index re-checks that the
   * address is still free.
   */
  async confirmEmailChange(req: ConfirmEmailChangeRequest) {
    const hash = hashEmailChangeToken(req.token);
    const found = await runAsPlatform("find the tenant of a presented email change token", () =>
      this.#deps.db.transaction((em) => em.execute<{ tenant_id: string }[]>("select tenant_id from email_change_tokens where hash = ?", [hash])),
    );
    const tenantId = found[0]?.tenant_id;
    if (tenantId === undefined) throw invalidEmailChange();
    return runInTenant(tenantId, async () => {
      const user = await this.#write(async (em) => {
        const now = this.#now();
        const row = (await em.execute<{ user_id: string; new_email: string }[]>("select user_id, new_email from email_change_tokens where hash = ? and used_at is null and expires_at > ? for update", [hash, now]))[0];
        if (row === undefined) throw invalidEmailChange();
        const u = await em.findOne(UserEntity, { id: row.user_id }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        if (u === null) throw invalidEmailChange();
        const oldEmail = u.email;
        await em.execute("update email_change_tokens set used_at = ? where user_id = ? and used_at is null", [now, u.id]);
        u.email = row.new_email;
        u.updatedAt = now;
        try {
          await em.flush();
        } catch (err) {
          if (isUniqueViolation(err)) throw alreadyExists(`user with email "${row.new_email}"`);
          throw err;
        }
        const message = userToProto(u, await roleIdsOf(em, u.id));
        await this.#deps.events.publish(em, {
          aggregate: "user",
          verb: "email_changed",
          aggregateId: u.id,
          schema: UserEmailChangedSchema,
          payload: { $typeName: UserEmailChangedSchema.typeName, userId: u.id, oldEmail, newEmail: u.email },
        });
        return message;
      });
      return { user };
    });
  }

  /**
   * Warns an inactive user that a retention rule deletes their account at
   * `delete_time`: the event makes the notifier mail them. A user active
   * since the rule's cut-off is not inactive (FAILED_PRECONDITION), so a
   * warning computed from stale facts is never sent.
   */
  async warnInactiveUser(req: WarnInactiveUserRequest) {
    tenantInScope();
    if (req.deleteTime === undefined || req.lastActivityBefore === undefined) throw invalidArgument("delete_time", "is required");
    const deleteTime = req.deleteTime;
    const cutoff = new Date(Number(req.lastActivityBefore.seconds) * 1000 + Math.floor(req.lastActivityBefore.nanos / 1e6));
    const user = await this.#write(async (em) => {
      const u = await loadUser(em, req.userId, "share");
      const lastSeen = Math.max(...[u.createdAt, u.lastSignInAt, u.lastActivityAt].filter((d): d is Date => d !== null && d !== undefined).map((d) => new Date(d).getTime()));
      if (lastSeen > cutoff.getTime()) throw failedPrecondition("the user was active after last_activity_before");
      const message = userToProto(u, await roleIdsOf(em, u.id));
      await this.#deps.events.publish(em, {
        aggregate: "user",
        verb: "inactivity_warned",
        aggregateId: u.id,
        schema: UserInactivityWarnedSchema,
        payload: { $typeName: UserInactivityWarnedSchema.typeName, userId: u.id, deleteTime, ...(u.lastSignInAt ? { lastSignInTime: timestampFromDate(new Date(u.lastSignInAt)) } : {}) },
      });
      return message;
    });
    return { user };
  }

  /** Suspends a loaded user and records user.suspended; revokes sessions when `revokeReason` is given. */
  async #suspend(em: EntityManager, u: User, reason: string, revokeReason: "user_suspended" | null) {
    u.state = userState.suspended;
    u.updatedAt = this.#now();
    await em.flush();
    if (revokeReason !== null) await this.#deps.sessions?.revokeAllForUser(em, u.id, revokeReason);
    const message = userToProto(u, await roleIdsOf(em, u.id));
    await this.#deps.events.publish(em, { aggregate: "user", verb: "suspended", aggregateId: u.id, schema: UserSuspendedSchema, payload: { $typeName: UserSuspendedSchema.typeName, user: message, reason } });
    return message;
  }

  /** Deletes a loaded user (assignments and invitations go with it) and records user.deleted. */
  async #delete(em: EntityManager, u: User): Promise<void> {
    const id = u.id;
    await em.nativeDelete(UserEntity, { id });
    em.getUnitOfWork().unsetIdentity(u);
    await this.#deps.events.publish(em, { aggregate: "user", verb: "deleted", aggregateId: id, schema: UserDeletedSchema, payload: { $typeName: UserDeletedSchema.typeName, userId: id } });
  }

  /** A write transaction in the tenant in scope; publishes its events right after commit. */
  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.#deps.db.transaction(fn);
    this.#deps.afterCommit?.();
    return result;
  }
}
