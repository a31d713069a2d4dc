import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Access review campaigns and their items (one grant each: a user holding a
 * role), under tenant isolation. A closed campaign's rows never change
 * again: they are the evidence of who decided what and what identity did.
 */
export class Migration20261221110000 extends Migration {
  override up(): void {
    this.addSql(`create table access_reviews (
      id text primary key,
      tenant_id text not null,
      name text not null,
      scope text not null check (scope in ('all_members', 'admins')),
      state text not null check (state in ('open', 'closed')),
      created_by text not null,
      created_at timestamptz not null,
      closed_by text null,
      closed_at timestamptz null
    )`);
    this.addSql("create index access_reviews_tenant_created_idx on access_reviews (tenant_id, created_at desc, id desc)");
    this.addSql(`create table access_review_items (
      id text primary key,
      tenant_id text not null,
      review_id text not null references access_reviews (id) on delete cascade,
      user_id text not null,
      user_display_name text not null,
      role_id text not null,
      role_name text not null,
      admin boolean not null,
      decision text null check (decision in ('keep', 'revoke')),
      decided_by text null,
      decided_at timestamptz null,
      comment text not null default '',
      outcome text null check (outcome in ('kept', 'revoked', 'revoke_failed')),
      outcome_detail text not null default '',
      unique (review_id, user_id, role_id)
    )`);
    this.addSql("create index access_review_items_review_idx on access_review_items (review_id, user_id, role_id)");
    this.addSql("create index access_review_items_closed_idx on access_review_items (tenant_id, user_id) where outcome is not null");
    for (const t of ["access_reviews", "access_review_items"]) for (const sql of tenantIsolationSql(t)) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists access_review_items");
    this.addSql("drop table if exists access_reviews");
  }
}
