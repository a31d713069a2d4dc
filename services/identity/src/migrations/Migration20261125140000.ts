import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * WebAuthn passkeys and their ceremony challenges, both under tenant
 * isolation. A challenge is stored as the SHA-256 of its value, single use
 * (`used_at`) and short-lived; the sign-in challenge knows its tenant from
 * the slug it was asked for, so every row has one. Credential ids are
 * unique across tenants (an authenticator's credential belongs to one
 * account), which the unique index enforces whatever RLS hides.
 */
export class Migration20261125140000 extends Migration {
  override up(): void {
    this.addSql(`create table passkeys (
      id text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      credential_id text not null,
      public_key bytea not null,
      counter bigint not null default 0,
      transports text[] not null default '{}',
      name text not null,
      created_at timestamptz not null,
      last_used_at timestamptz null
    )`);
    this.addSql("create unique index passkeys_credential_id_key on passkeys (credential_id)");
    this.addSql("create index passkeys_user_idx on passkeys (tenant_id, user_id, created_at desc)");
    for (const sql of tenantIsolationSql("passkeys")) this.addSql(sql);

    this.addSql(`create table webauthn_challenges (
      hash text primary key,
      tenant_id text not null,
      user_id text null references users (id) on delete cascade,
      kind text not null check (kind in ('registration', 'sign_in')),
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null
    )`);
    this.addSql("create index webauthn_challenges_expires_idx on webauthn_challenges (expires_at)");
    for (const sql of tenantIsolationSql("webauthn_challenges")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists webauthn_challenges");
    this.addSql("drop table if exists passkeys");
  }
}
