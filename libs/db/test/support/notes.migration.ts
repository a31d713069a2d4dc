import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "../../src/index.js";

/** Creates the tenant-owned `notes` table under tenant isolation. */
export class NotesMigration20260101 extends Migration {
  override up(): void {
    this.addSql("create table notes (id text primary key, tenant_id text not null, body text not null)");
    for (const sql of tenantIsolationSql("notes")) this.addSql(sql);
  }
}
