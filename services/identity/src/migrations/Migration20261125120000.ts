import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Sign-in, sessions and tokens. Tenant-owned tables (sessions, refresh and
 * reset tokens, MFA challenges, password history) are under tenant
 * isolation. The two platform tables — brute-force counters keyed by account
 * and by client address, and the token signing keys — keep `tenant_id` null
 * under the same policy, so only a transaction in the explicit platform
 * scope (`runAsPlatform`) can read or write them.
 */
export class Migration20261125120000 extends Migration {
  override up(): void {
    this.addSql(`create table sessions (
      id text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      device text not null default '',
      user_agent text not null default '',
      ip_address text not null default '',
      mfa_pending boolean not null default false,
      created_at timestamptz not null,
      last_seen_at timestamptz not null,
      idle_timeout_s integer not null,
      expires_at timestamptz not null,
      revoked_at timestamptz null,
      revoke_reason text null
    )`);
    this.addSql("create index sessions_user_idx on sessions (tenant_id, user_id, created_at desc)");
    this.addSql("create index sessions_device_idx on sessions (tenant_id, user_id, device, ip_address)");
    for (const sql of tenantIsolationSql("sessions")) this.addSql(sql);

    this.addSql(`create table refresh_tokens (
      hash text primary key,
      session_id text not null references sessions (id) on delete cascade,
      tenant_id text not null,
      created_at timestamptz not null,
      used_at timestamptz null,
      expires_at timestamptz not null
    )`);
    this.addSql("create index refresh_tokens_session_idx on refresh_tokens (session_id)");
    for (const sql of tenantIsolationSql("refresh_tokens")) this.addSql(sql);

    this.addSql(`create table password_reset_tokens (
      hash text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null
    )`);
    this.addSql("create index password_reset_tokens_user_idx on password_reset_tokens (user_id)");
    for (const sql of tenantIsolationSql("password_reset_tokens")) this.addSql(sql);

    this.addSql(`create table mfa_challenges (
      hash text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      device text not null default '',
      user_agent text not null default '',
      ip_address text not null default '',
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null
    )`);
    for (const sql of tenantIsolationSql("mfa_challenges")) this.addSql(sql);

    this.addSql(`create table password_history (
      id text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      password_hash text not null,
      created_at timestamptz not null
    )`);
    this.addSql("create index password_history_user_idx on password_history (user_id, created_at desc)");
    for (const sql of tenantIsolationSql("password_history")) this.addSql(sql);

    this.addSql(`create table sign_in_throttles (
      key text primary key,
      tenant_id text null check (tenant_id is null),
      failures integer not null default 0,
      locked_until timestamptz null,
      updated_at timestamptz not null default now()
    )`);
    this.addSql("create index sign_in_throttles_updated_idx on sign_in_throttles (updated_at)");
    for (const sql of tenantIsolationSql("sign_in_throttles")) this.addSql(sql);

    this.addSql(`create table signing_keys (
      kid text primary key,
      tenant_id text null check (tenant_id is null),
      private_jwk text not null,
      public_jwk text not null,
      created_at timestamptz not null,
      retire_after timestamptz not null,
      expires_at timestamptz not null
    )`);
    for (const sql of tenantIsolationSql("signing_keys")) this.addSql(sql);
  }

  override down(): void {
    for (const t of ["signing_keys", "sign_in_throttles", "password_history", "mfa_challenges", "password_reset_tokens", "refresh_tokens", "sessions"]) {
      this.addSql(`drop table if exists ${t}`);
    }
  }
}
