import { Migration } from "@mikro-orm/migrations";

/** security notifications and email changes (filled in by the notifications part). */
export class Migration20261125150000 extends Migration {
  override up(): void {}
}
