import { Migration } from "@mikro-orm/migrations";

/**
 * A permission epoch per user. Access tokens carry it (`pep`); whenever a
 * user's permissions shrink (a role revoked, a held role narrowed, MFA reset,
 * ownership handed on) identity raises it and publishes
 * `user.grants_reduced`, and every service refuses the user's older tokens
 * from then on, so a removed permission stops working within a second
 * instead of when the token expires. Existing tokens carry no epoch (0),
 * which the first reduction outdates.
 */
export class Migration20261201090000 extends Migration {
  override up(): void {
    this.addSql("alter table users add column permission_epoch integer not null default 0");
  }

  override down(): void {
    this.addSql("alter table users drop column permission_epoch");
  }
}
