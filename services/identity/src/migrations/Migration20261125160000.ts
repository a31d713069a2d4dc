import { Migration } from "@mikro-orm/migrations";

/** platform operator accounts (filled in by the operators part). */
export class Migration20261125160000 extends Migration {
  override up(): void {}
}
