import type { ServiceConfig } from "@bulwark/core";

/**
 * The only role that may delete audit entries (and drop whole monthly
 * partitions through `audit_drop_partition`): `<runtime role>_retention`,
 * NOLOGIN, created by audit's migration. The retention job connects with
 * DATABASE_ADMIN_URL (or any login role granted this one) and runs
 * `SET ROLE <it>` in its transaction; the runtime role is not a member, so
 * the service itself can never remove a record. Everyone else, superusers
 * included, is refused by the append-only trigger.
 */
export function retentionRoleOf(config: Pick<ServiceConfig, "DATABASE_URL">): string {
  return `${decodeURIComponent(new URL(config.DATABASE_URL).username)}_retention`;
}
