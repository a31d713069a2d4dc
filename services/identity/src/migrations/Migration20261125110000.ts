import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * A tenant's custom roles and the invitations of its invited users, both
 * under tenant isolation. System roles are not rows: they are the same in
 * every tenant and live in code (@bulwark/core permissions).
 */
export class Migration20261125110000 extends Migration {
  override up(): void {
    this.addSql(`create table roles (
      id text primary key,
      tenant_id text not null,
      name text not null,
      description text not null default '',
      permissions text[] not null default '{}',
      created_at timestamptz not null,
      updated_at timestamptz not null
    )`);
    this.addSql("create unique index roles_tenant_name_unique on roles (tenant_id, lower(name))");
    for (const sql of tenantIsolationSql("roles")) this.addSql(sql);

    // Only the SHA-256 of an invitation token is kept; the token is shown once.
    this.addSql(`create table invitations (
      id text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      token_hash text not null,
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null
    )`);
    this.addSql("create unique index invitations_token_hash_unique on invitations (token_hash)");
    this.addSql("create index invitations_user_idx on invitations (tenant_id, user_id)");
    for (const sql of tenantIsolationSql("invitations")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists invitations");
    this.addSql("drop table if exists roles");
  }
}
