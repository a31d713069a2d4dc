import { effectivePermissions, systemRole } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";

/** What a user's roles grant, read when a token is issued. */
export interface Grants {
  readonly roles: string[];
  readonly permissions: string[];
  /** True when a held role demands a second factor (Owner, Admin). */
  readonly roleRequiresMfa: boolean;
  /** The user's permission epoch, carried by their tokens (`pep`). */
  readonly permissionEpoch: number;
}

/**
 * The roles and effective permissions of a user, inside the caller's tenant
 * transaction: system roles from @bulwark/core, custom roles from the
 * `roles` table (under row-level security, so another tenant's role of the
 * same id can never count).
 */
export async function permissionsOf(em: EntityManager, userId: string): Promise<Grants> {
  const row = (
    await em.execute<{ permission_epoch: number; roles: string[] }[]>(
      "select u.permission_epoch, array(select ur.role_id from user_roles ur where ur.user_id = u.id order by ur.role_id) as roles from users u where u.id = ?",
      [userId],
    )
  )[0];
  const roles = row?.roles ?? [];
  const customIds = roles.filter((id) => systemRole(id) === undefined);
  const custom = customIds.length === 0 ? [] : await em.execute<{ id: string; permissions: string[] }[]>("select id, permissions from roles where id in (?)", [customIds]);
  return grantsOf(roles, custom, row?.permission_epoch ?? 0);
}

/**
 * The grants of a set of role ids, given the custom roles among them as read
 * from the `roles` table (an id that is neither a system role nor found
 * there grants nothing), under the user's permission epoch.
 */
export function grantsOf(roles: readonly string[], custom: readonly { id: string; permissions: readonly string[] }[], permissionEpoch: number): Grants {
  const permissions = [...effectivePermissions(roles, custom)].sort();
  return { roles: [...roles], permissions, roleRequiresMfa: roles.some((id) => systemRole(id)?.requiresMfa === true), permissionEpoch };
}

/**
 * The permissions of a token issued before the user has enrolled a required
 * second factor: enrolling one (TOTP, or a passkey, whose first
 * registration counts as enrolment) and ending their own sessions.
 */
export const enrollmentOnlyPermissions: readonly string[] = ["identity.mfa.self", "identity.passkeys.self", "identity.sessions.self"];
