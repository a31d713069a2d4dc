import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * The latest posture report of each tenant, under tenant isolation: the
 * binary PostureReport message as evaluated (controls, failing items,
 * evidence and the audit checkpoint), with its time and counts beside it
 * for queries. Failing items name ids only, never an email.
 */
export class Migration20261221100000 extends Migration {
  override up(): void {
    this.addSql(`create table posture_reports (
      tenant_id text primary key,
      evaluated_at timestamptz not null,
      passed integer not null,
      failed integer not null,
      report bytea not null
    )`);
    for (const sql of tenantIsolationSql("posture_reports")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists posture_reports");
  }
}
