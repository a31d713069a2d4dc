import { tenantIsolationSql } from "@bulwark/db";
import { Migration } from "@mikro-orm/migrations";

/**
 * The event tables every service needs: the transactional `outbox`, the
 * consumer `inbox` that makes redelivery harmless, and `parked_events` for
 * poison messages. Add it to each service's migration list. The tables carry
 * a nullable `tenant_id` under the usual tenant policy: rows written in a
 * tenant transaction must belong to that tenant, and rows with no tenant
 * (platform-wide events) are visible only in the platform scope, which is
 * where the relay and parking run.
 */
export class EventsMigration20260101 extends Migration {
  override up(): void {
    this.addSql(
      `create table outbox (
        id text primary key,
        tenant_id text null,
        subject text not null,
        envelope bytea not null,
        headers jsonb not null default '{}'::jsonb,
        created_at timestamptz not null default now(),
        sent_at timestamptz null
      )`,
    );
    this.addSql("create index outbox_unsent_idx on outbox (created_at, id) where sent_at is null");
    this.addSql("create index outbox_sent_at_idx on outbox (sent_at) where sent_at is not null");
    this.addSql(
      `create table inbox (
        consumer text not null,
        event_id text not null,
        tenant_id text null,
        handled_at timestamptz not null default now(),
        primary key (consumer, event_id)
      )`,
    );
    this.addSql(
      `create table parked_events (
        id bigserial primary key,
        consumer text not null,
        event_id text not null,
        tenant_id text null,
        subject text not null,
        envelope bytea not null,
        headers jsonb not null default '{}'::jsonb,
        error text not null,
        deliveries integer not null,
        parked_at timestamptz not null default now()
      )`,
    );
    for (const table of ["outbox", "inbox", "parked_events"]) {
      for (const sql of tenantIsolationSql(table)) this.addSql(sql);
    }
  }

  override down(): void {
    this.addSql("drop table if exists parked_events");
    this.addSql("drop table if exists inbox");
    this.addSql("drop table if exists outbox");
  }
}
