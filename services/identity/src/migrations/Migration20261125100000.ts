import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/** Users and their role assignments, under tenant isolation. */
export class Migration20261125100000 extends Migration {
  override up(): void {
    this.addSql(`create table users (
      id text primary key,
      tenant_id text not null,
      email text not null,
      display_name text not null,
      state text not null,
      password_hash text null,
      mfa_enrolled boolean not null default false,
      created_at timestamptz not null,
      updated_at timestamptz not null,
      last_sign_in_at timestamptz null,
      last_activity_at timestamptz null,
      version integer not null default 1
    )`);
    this.addSql("create unique index users_tenant_email_unique on users (tenant_id, email)");
    this.addSql("create index users_tenant_created_idx on users (tenant_id, created_at desc, id desc)");
    for (const sql of tenantIsolationSql("users")) this.addSql(sql);

    this.addSql(`create table user_roles (
      user_id text not null references users (id) on delete cascade,
      role_id text not null,
      tenant_id text not null,
      created_at timestamptz not null,
      primary key (user_id, role_id)
    )`);
    this.addSql("create index user_roles_role_idx on user_roles (tenant_id, role_id)");
    for (const sql of tenantIsolationSql("user_roles")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists user_roles");
    this.addSql("drop table if exists users");
  }
}
