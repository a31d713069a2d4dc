import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Monitoring (src/monitoring): per-tenant rule settings, the sliding windows
 * of counted events, what was seen before (addresses, as the tenant's keyed
 * hash; who holds an admin role), and when each rule last fired for a key
 * (so a storm raises one alert per window). Tenant-isolated; not part of
 * the trail (alerts themselves are recorded there as events).
 */
export class Migration20261221100000 extends Migration {
  override up(): void {
    this.addSql(`create table monitor_settings (
      tenant_id text primary key,
      rules jsonb not null,
      updated_at timestamptz not null default now()
    )`);
    this.addSql(`create table monitor_hits (
      tenant_id text not null,
      rule text not null,
      key text not null,
      event_id text not null,
      at timestamptz not null,
      primary key (tenant_id, rule, key, event_id)
    )`);
    this.addSql("create index monitor_hits_window_idx on monitor_hits (tenant_id, rule, key, at)");
    this.addSql(`create table monitor_known (
      tenant_id text not null,
      kind text not null,
      subject text not null,
      value text not null,
      first_seen timestamptz not null,
      primary key (tenant_id, kind, subject, value)
    )`);
    this.addSql(`create table monitor_fired (
      tenant_id text not null,
      rule text not null,
      key text not null,
      fired_at timestamptz not null,
      primary key (tenant_id, rule, key)
    )`);
    for (const t of ["monitor_settings", "monitor_hits", "monitor_known", "monitor_fired"]) for (const sql of tenantIsolationSql(t)) this.addSql(sql);
  }

  override down(): void {
    for (const t of ["monitor_fired", "monitor_known", "monitor_hits", "monitor_settings"]) this.addSql(`drop table if exists ${t}`);
  }
}
