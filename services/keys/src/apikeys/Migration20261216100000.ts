import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * API keys under tenant isolation. Only an HMAC-SHA256 of each secret is
 * stored (`secret_hash`); the key id is the public part of the key's text,
 * unique across the platform so VerifyApiKey finds it before it knows the
 * tenant. `cap_id` names the usage-cap counter a key draws from (its own
 * id, or its predecessor's after a rotation); `usage_count` and
 * `last_used_at` are written in batches.
 */
export class Migration20261216100000 extends Migration {
  override up(): void {
    this.addSql(`create table api_keys (
      id text primary key,
      tenant_id text not null,
      name text not null,
      environment text not null check (environment in ('live', 'test')),
      owner_id text not null,
      scopes text[] not null,
      granted text[] not null,
      secret_hash bytea not null,
      metadata jsonb not null default '{}',
      state text not null check (state in ('active', 'revoked')),
      created_at timestamptz not null,
      updated_at timestamptz not null,
      expires_at timestamptz not null,
      revoked_at timestamptz null,
      revoke_reason text null,
      last_used_at timestamptz null,
      usage_count bigint not null default 0,
      rate_limit integer null,
      rate_window_ms integer null,
      usage_limit bigint null,
      cap_id text not null,
      rotated_from text null,
      rotated_to text null,
      rotation_deadline timestamptz null,
      expiry_warned_at timestamptz null
    )`);
    this.addSql("create index api_keys_tenant_created_idx on api_keys (tenant_id, created_at desc, id desc)");
    this.addSql("create index api_keys_owner_idx on api_keys (tenant_id, owner_id) where state = 'active'");
    this.addSql("create index api_keys_expiry_idx on api_keys (expires_at) where state = 'active' and expiry_warned_at is null");
    this.addSql("create index api_keys_rotation_idx on api_keys (rotation_deadline) where state = 'active' and rotation_deadline is not null");
    for (const sql of tenantIsolationSql("api_keys")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists api_keys");
  }
}
