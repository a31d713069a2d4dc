import { Migration } from "@mikro-orm/migrations";

/**
 * The reauthentication window of each tenant's security policy (how recent
 * a sign-in must be for sensitive self-service changes); existing tenants
 * get the default of 15 minutes.
 */
export class Migration20261126090000 extends Migration {
  override up(): void {
    this.addSql("alter table security_policies add column reauthentication_window_s integer not null default 900");
  }

  override down(): void {
    this.addSql("alter table security_policies drop column if exists reauthentication_window_s");
  }
}
