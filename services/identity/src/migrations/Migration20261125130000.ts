import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * TOTP and recovery codes, both tenant-owned under tenant isolation. The
 * TOTP secret is stored sealed (AES-256-GCM, see mfa/secret-box.ts);
 * `last_used_step` only moves forward, so each code works once. Recovery
 * codes are stored as hashes. MFA challenges (created by sign-in) gain a
 * count of wrong codes: the fifth ends the challenge.
 */
export class Migration20261125130000 extends Migration {
  override up(): void {
    this.addSql(`create table totp_credentials (
      user_id text primary key references users (id) on delete cascade,
      tenant_id text not null,
      secret_ciphertext bytea not null,
      confirmed_at timestamptz null,
      last_used_step bigint not null default 0,
      created_at timestamptz not null
    )`);
    for (const sql of tenantIsolationSql("totp_credentials")) this.addSql(sql);

    this.addSql(`create table recovery_codes (
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      code_hash text not null,
      used_at timestamptz null,
      created_at timestamptz not null,
      primary key (user_id, code_hash)
    )`);
    for (const sql of tenantIsolationSql("recovery_codes")) this.addSql(sql);

    this.addSql("alter table mfa_challenges add column failed_attempts integer not null default 0");
  }
}
