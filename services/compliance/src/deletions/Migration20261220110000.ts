import { Migration } from "@mikro-orm/migrations";

/**
 * Deletions of closed tenants and each service's step of one. Platform
 * tables (no row-level security): they outlive the tenant they describe,
 * as the evidence of its deletion, and only platform work touches them.
 */
export class Migration20261220110000 extends Migration {
  override up(): void {
    this.addSql(`create table tenant_deletions (
      id text primary key,
      tenant_id text not null,
      state text not null check (state in ('scheduled', 'in_progress', 'completed', 'cancelled')),
      closed_at timestamptz not null,
      purge_at timestamptz not null,
      completed_at timestamptz null,
      updated_at timestamptz not null
    )`);
    this.addSql("create unique index tenant_deletions_open_idx on tenant_deletions (tenant_id) where state in ('scheduled', 'in_progress')");
    this.addSql("create index tenant_deletions_due_idx on tenant_deletions (purge_at) where state = 'scheduled'");
    this.addSql(`create table tenant_deletion_steps (
      deletion_id text not null references tenant_deletions (id) on delete cascade,
      service text not null,
      position integer not null,
      state text not null check (state in ('pending', 'retrying', 'done', 'failed')),
      attempts integer not null default 0,
      last_error text not null default '',
      next_attempt_at timestamptz not null,
      done_at timestamptz null,
      result jsonb not null default '{}',
      primary key (deletion_id, service)
    )`);
  }

  override down(): void {
    this.addSql("drop table if exists tenant_deletion_steps");
    this.addSql("drop table if exists tenant_deletions");
  }
}
