import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RoleSchema, UserSchema, UserState, type Role as RoleMessage, type User as UserMessage } from "@bulwark/contracts";
import type { SystemRole } from "@bulwark/core";
import type { RoleRow } from "../entities/role.entity.js";
import type { User } from "../entities/user.entity.js";

/** Stored names of user states (the enum name, stable across renumbering). */
export const userState = {
  invited: UserState[UserState.INVITED],
  active: UserState[UserState.ACTIVE],
  suspended: UserState[UserState.SUSPENDED],
} as const;

/** The wire form of a stored user and the ids of the roles they hold. */
export function userToProto(u: User, roleIds: readonly string[]): UserMessage {
  return create(UserSchema, {
    id: u.id,
    tenantId: u.tenantId,
    email: u.email,
    displayName: u.displayName,
    state: UserState[u.state as keyof typeof UserState],
    roleIds: [...roleIds].sort(),
    mfaEnrolled: u.mfaEnrolled,
    createTime: timestampFromDate(u.createdAt),
    updateTime: timestampFromDate(u.updatedAt),
    ...(u.lastSignInAt ? { lastSignInTime: timestampFromDate(u.lastSignInAt) } : {}),
    ...(u.lastActivityAt ? { lastActivityTime: timestampFromDate(u.lastActivityAt) } : {}),
  });
}

/** The wire form of a system role (no tenant: it is the same in every tenant). */
export function systemRoleToProto(r: SystemRole): RoleMessage {
  return create(RoleSchema, { id: r.id, tenantId: "", name: r.name, description: r.description, permissions: [...r.permissions], system: true, requiresMfa: r.requiresMfa });
}

/** The wire form of a tenant's custom role. */
export function customRoleToProto(r: RoleRow): RoleMessage {
  return create(RoleSchema, { id: r.id, tenantId: r.tenantId, name: r.name, description: r.description, permissions: [...r.permissions].sort(), system: false, requiresMfa: false });
}
