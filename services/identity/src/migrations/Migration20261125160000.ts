import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Platform operator accounts and their sessions. Operators stand outside
 * every tenant (they create and suspend tenants), so these are platform
 * tables, not tenant-owned ones: `tenant_id` exists only to be forced null
 * (`check (tenant_id is null)`) under the same isolation policy as every
 * other table. A tenant-scoped transaction therefore sees no operator row at
 * all, and only code that says so explicitly (`runAsPlatform`) can read or
 * write them — an injection or a forgotten scope in a tenant request cannot
 * list or change the accounts that rule the whole platform.
 *
 * Operator sessions get their own table rather than `sessions`, whose rows
 * belong to a tenant and a user; refresh tokens for operators come later
 * (an operator signs in again after the one-hour access token).
 */
export class Migration20261125160000 extends Migration {
  override up(): void {
    this.addSql(`create table operators (
      id text primary key,
      tenant_id text null check (tenant_id is null),
      email text not null,
      display_name text not null,
      password_hash text not null,
      state text not null check (state in ('ACTIVE', 'DISABLED')),
      created_at timestamptz not null default now(),
      last_sign_in_at timestamptz null
    )`);
    this.addSql("create unique index operators_email_key on operators (lower(email))");
    for (const sql of tenantIsolationSql("operators")) this.addSql(sql);

    this.addSql(`create table operator_sessions (
      id text primary key,
      tenant_id text null check (tenant_id is null),
      operator_id text not null references operators (id),
      ip_address text not null default '',
      created_at timestamptz not null,
      expires_at timestamptz not null,
      revoked_at timestamptz null
    )`);
    this.addSql("create index operator_sessions_operator_idx on operator_sessions (operator_id)");
    for (const sql of tenantIsolationSql("operator_sessions")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists operator_sessions");
    this.addSql("drop table if exists operators");
  }
}
