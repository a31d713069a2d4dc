import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * The credential vault and webhook signing secrets, under tenant isolation.
 * Values are stored only as ciphertext of the tenant's key ring.
 *
 * - `secrets` / `secret_versions`: a named credential and its versions;
 *   `reminded_version` is the newest version a rotation reminder was sent
 *   for, so each version is reminded once.
 * - `webhook_secrets` / `webhook_secret_versions`: signing secrets; while
 *   `previous_valid_until` is in the future the version before the current
 *   one signs too.
 */
export class Migration20261215110000 extends Migration {
  override up(): void {
    this.addSql(`create table secrets (
      id text primary key,
      tenant_id text not null,
      name text not null,
      description text not null default '',
      current_version integer not null,
      rotation_period_s integer null check (rotation_period_s is null or rotation_period_s > 0),
      reminded_version integer not null default 0,
      created_at timestamptz not null,
      updated_at timestamptz not null,
      unique (tenant_id, name)
    )`);
    this.addSql("create index secrets_rotation_idx on secrets (updated_at) where rotation_period_s is not null");
    for (const sql of tenantIsolationSql("secrets")) this.addSql(sql);

    this.addSql(`create table secret_versions (
      secret_id text not null references secrets (id) on delete cascade,
      version integer not null,
      tenant_id text not null,
      ciphertext bytea not null,
      size_bytes integer not null,
      created_by text not null,
      created_at timestamptz not null,
      primary key (secret_id, version)
    )`);
    for (const sql of tenantIsolationSql("secret_versions")) this.addSql(sql);

    this.addSql(`create table webhook_secrets (
      id text primary key,
      tenant_id text not null,
      name text not null,
      current_version integer not null,
      previous_valid_until timestamptz null,
      created_at timestamptz not null,
      rotated_at timestamptz not null,
      unique (tenant_id, name)
    )`);
    for (const sql of tenantIsolationSql("webhook_secrets")) this.addSql(sql);

    this.addSql(`create table webhook_secret_versions (
      webhook_secret_id text not null references webhook_secrets (id) on delete cascade,
      version integer not null,
      tenant_id text not null,
      ciphertext bytea not null,
      created_at timestamptz not null,
      primary key (webhook_secret_id, version)
    )`);
    for (const sql of tenantIsolationSql("webhook_secret_versions")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists webhook_secret_versions");
    this.addSql("drop table if exists webhook_secrets");
    this.addSql("drop table if exists secret_versions");
    this.addSql("drop table if exists secrets");
  }
}
