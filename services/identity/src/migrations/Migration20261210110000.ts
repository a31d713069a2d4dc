import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Platform operators get a second factor and refresh tokens. All platform
 * tables (`tenant_id` forced null, visible only in the explicit platform
 * scope), as the operators table is:
 *
 * - `operator_totp_credentials`: the sealed TOTP secret of an operator,
 *   pending until confirmed; `last_used_step` only moves forward, so each
 *   code works once (the same rules as users' `totp_credentials`).
 * - `operator_mfa_challenges`: a password sign-in waiting for its code
 *   (the SHA-256 of its token), 5 minutes, ended by 5 wrong codes.
 * - `operator_refresh_tokens`: single-use refresh tokens (SHA-256) of an
 *   operator session.
 *
 * `operators.mfa_enrolled` says whether the operator has a confirmed
 * factor; `operator_sessions.mfa_pending` marks the enrolment-only
 * sessions of operators who had none when they signed in.
 */
export class Migration20261210110000 extends Migration {
  override up(): void {
    this.addSql("alter table operators add column mfa_enrolled boolean not null default false");
    this.addSql("alter table operator_sessions add column mfa_pending boolean not null default false");

    this.addSql(`create table operator_totp_credentials (
      operator_id text primary key references operators (id),
      tenant_id text null check (tenant_id is null),
      secret_ciphertext bytea not null,
      confirmed_at timestamptz null,
      last_used_step bigint not null default 0,
      created_at timestamptz not null
    )`);
    for (const sql of tenantIsolationSql("operator_totp_credentials")) this.addSql(sql);

    this.addSql(`create table operator_mfa_challenges (
      hash text primary key,
      tenant_id text null check (tenant_id is null),
      operator_id text not null references operators (id),
      ip_address text not null default '',
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null,
      failed_attempts integer not null default 0
    )`);
    this.addSql("create index operator_mfa_challenges_expires_idx on operator_mfa_challenges (expires_at)");
    for (const sql of tenantIsolationSql("operator_mfa_challenges")) this.addSql(sql);

    this.addSql(`create table operator_refresh_tokens (
      hash text primary key,
      tenant_id text null check (tenant_id is null),
      session_id text not null references operator_sessions (id),
      created_at timestamptz not null,
      used_at timestamptz null,
      expires_at timestamptz not null
    )`);
    this.addSql("create index operator_refresh_tokens_session_idx on operator_refresh_tokens (session_id)");
    for (const sql of tenantIsolationSql("operator_refresh_tokens")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists operator_refresh_tokens");
    this.addSql("drop table if exists operator_mfa_challenges");
    this.addSql("drop table if exists operator_totp_credentials");
    this.addSql("alter table operator_sessions drop column if exists mfa_pending");
    this.addSql("alter table operators drop column if exists mfa_enrolled");
  }
}
