import { Migration } from "@mikro-orm/migrations";

/** WebAuthn passkeys (filled in by the passkeys part). */
export class Migration20261125140000 extends Migration {
  override up(): void {}
}
