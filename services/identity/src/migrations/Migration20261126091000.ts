import { Migration } from "@mikro-orm/migrations";

/**
 * When each session last authenticated (sign-in, then each
 * AuthService.Reauthenticate): access tokens carry it as `auth_time`, kept
 * across refreshes, and sensitive self-service changes ask for it to be
 * recent. Existing sessions authenticated when they were created.
 */
export class Migration20261126091000 extends Migration {
  override up(): void {
    this.addSql("alter table sessions add column auth_time timestamptz null");
    this.addSql("update sessions set auth_time = created_at");
    this.addSql("alter table sessions alter column auth_time set not null");
  }

  override down(): void {
    this.addSql("alter table sessions drop column if exists auth_time");
  }
}
