import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Slugs are unique forever (tenancy proto): when a closed tenant is purged
 * its row goes, and its slug stays here so CreateTenant keeps refusing it.
 * A tombstone holds the slug, the purged tenant's id, the deletion and the
 * time, nothing about any person. Rows are written in the purged tenant's
 * scope (tenant isolation); every scope may read them, since CreateTenant
 * checks a slug from the new tenant's scope.
 */
export class Migration20261223090000 extends Migration {
  override up(): void {
    this.addSql(`create table retired_slugs (
      slug text primary key,
      tenant_id text not null,
      deletion_id text not null default '',
      retired_at timestamptz not null
    )`);
    for (const sql of tenantIsolationSql("retired_slugs")) this.addSql(sql);
    this.addSql("drop policy if exists retired_slugs_readable on retired_slugs");
    this.addSql("create policy retired_slugs_readable on retired_slugs for select using (true)");
  }

  override down(): void {
    this.addSql("drop table if exists retired_slugs");
  }
}
