import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Retention rules a tenant set (a category without a row follows the
 * default), and the accounts the inactive-account rule acted on: warned,
 * then kept (the user signed in) or deleted. One row per tenant and user
 * makes the warning and the deletion idempotent whichever replica runs the
 * job, however often.
 */
export class Migration20261221120000 extends Migration {
  override up(): void {
    this.addSql(`create table retention_rules (
      tenant_id text not null,
      category text not null check (category in ('audit_entries', 'sessions', 'inactive_accounts', 'exports')),
      period_s bigint not null,
      enabled boolean not null,
      updated_at timestamptz not null,
      updated_by text not null,
      primary key (tenant_id, category)
    )`);
    this.addSql(`create table inactive_accounts (
      tenant_id text not null,
      user_id text not null,
      state text not null check (state in ('warned', 'kept', 'deleted')),
      warned_at timestamptz not null,
      delete_at timestamptz not null,
      last_sign_in_at timestamptz null,
      settled_at timestamptz null,
      primary key (tenant_id, user_id)
    )`);
    this.addSql("create index inactive_accounts_due_idx on inactive_accounts (delete_at) where state = 'warned'");
    for (const t of ["retention_rules", "inactive_accounts"]) for (const sql of tenantIsolationSql(t)) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists inactive_accounts");
    this.addSql("drop table if exists retention_rules");
  }
}
