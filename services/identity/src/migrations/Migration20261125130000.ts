import { Migration } from "@mikro-orm/migrations";

/** TOTP, recovery codes and MFA challenges (filled in by the mfa part). */
export class Migration20261125130000 extends Migration {
  override up(): void {}
}
