import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Pending email changes: the SHA-256 of each single-use confirmation token
 * (the token itself is only ever in the mail to the new address), under
 * tenant isolation. A deleted user's pending changes go with them.
 */
export class Migration20261125150000 extends Migration {
  override up(): void {
    this.addSql(`create table email_change_tokens (
      hash text primary key,
      tenant_id text not null,
      user_id text not null references users (id) on delete cascade,
      new_email text not null,
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null
    )`);
    this.addSql("create index email_change_tokens_user_idx on email_change_tokens (user_id)");
    for (const sql of tenantIsolationSql("email_change_tokens")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists email_change_tokens");
  }
}
