import { Migration } from "@mikro-orm/migrations";

/**
 * How often the keys service rotates each tenant's data keys on its own
 * (the security policy's encryption_key_rotation_period); existing tenants
 * get the default of 365 days.
 */
export class Migration20261215090000 extends Migration {
  override up(): void {
    this.addSql("alter table security_policies add column encryption_key_rotation_period_s integer not null default 31536000");
  }

  override down(): void {
    this.addSql("alter table security_policies drop column if exists encryption_key_rotation_period_s");
  }
}
