import { retentionCopySql, retentionCopyDownSql } from "@bulwark/server";
import { Migration } from "@mikro-orm/migrations";

/**
 * Audit's copy of compliance's retention rules and legal holds (from
 * compliance's retention_rule and legal_hold events): the retention job
 * reads the audit-entries rule and holds there.
 */
export class Migration20261223100000 extends Migration {
  override up(): void {
    for (const sql of retentionCopySql()) this.addSql(sql);
  }

  override down(): void {
    for (const sql of retentionCopyDownSql()) this.addSql(sql);
  }
}
