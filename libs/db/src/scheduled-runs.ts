import { Migration } from "@mikro-orm/migrations";

/**
 * The claims of the shared scheduler (libs/server/src/scheduler.ts): one row
 * per job and period, inserted by the replica that runs it. The primary key
 * makes the claim exclusive (`insert … on conflict do nothing`), so of all
 * replicas exactly one runs a job in a period; `lease_until` lets another
 * replica take over a run whose owner died before finishing it (the claim
 * is updated in place, `attempt` counts the takeovers). Finished rows keep
 * the outcome, duration and what the run reported, for operators; they are
 * pruned by the scheduler after `retention`. Platform data (no tenant):
 * read and written only in the explicit platform scope. Add it to each
 * service's migration list.
 */
export class ScheduledRunsMigration20261215 extends Migration {
  override up(): void {
    this.addSql(`create table scheduled_runs (
      job text not null,
      period_start timestamptz not null,
      tenant_id text null check (tenant_id is null),
      owner text not null,
      attempt integer not null default 1,
      claimed_at timestamptz not null,
      lease_until timestamptz not null,
      finished_at timestamptz null,
      outcome text null check (outcome in ('succeeded', 'failed')),
      error text null,
      duration_ms integer null,
      summary jsonb null,
      primary key (job, period_start)
    )`);
    this.addSql("create index scheduled_runs_finished_idx on scheduled_runs (finished_at)");
    this.addSql("alter table scheduled_runs enable row level security");
    this.addSql("create policy platform_only on scheduled_runs using (current_setting('app.platform', true) = 'on') with check (current_setting('app.platform', true) = 'on')");
  }

  override down(): void {
    this.addSql("drop table if exists scheduled_runs");
  }
}
