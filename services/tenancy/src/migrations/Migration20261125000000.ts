import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/** Tenants and their security policies, both under tenant isolation. */
export class Migration20261125000000 extends Migration {
  override up(): void {
    this.addSql(`create table tenants (
      id text primary key,
      tenant_id text not null check (tenant_id = id),
      slug text not null,
      display_name text not null,
      region text not null,
      plan text not null,
      state text not null,
      state_reason text not null default '',
      created_at timestamptz not null,
      updated_at timestamptz not null,
      closed_at timestamptz null,
      purge_at timestamptz null,
      version integer not null default 1
    )`);
    this.addSql("create unique index tenants_slug_unique on tenants (slug)");
    this.addSql("create index tenants_created_idx on tenants (created_at desc, id desc)");
    for (const sql of tenantIsolationSql("tenants")) this.addSql(sql);

    this.addSql(`create table security_policies (
      tenant_id text primary key references tenants (id) on delete cascade,
      mfa_requirement text not null,
      password_min_length integer not null,
      access_token_lifetime_s integer not null,
      refresh_token_lifetime_s integer not null,
      idle_timeout_s integer not null,
      api_key_max_lifetime_s integer not null,
      ip_allowlist text[] not null default '{}',
      audit_retention_s integer not null,
      inactive_after_days integer not null,
      warn_after_days integer not null,
      grace_days integer not null,
      revision integer not null,
      updated_at timestamptz not null
    )`);
    for (const sql of tenantIsolationSql("security_policies")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists security_policies");
    this.addSql("drop table if exists tenants");
  }
}
