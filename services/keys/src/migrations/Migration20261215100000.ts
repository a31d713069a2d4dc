import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Key rings and their versions, under tenant isolation (a service's own
 * ring has no tenant and is visible only in the platform scope).
 *
 * - `key_rings`: one per tenant, per data subject of a tenant, or per
 *   Bulwark service (`scope` = kind:tenant:subject, unique). The current
 *   version encrypts; versions below `min_decrypt_version` refuse to
 *   decrypt; a destroyed ring is a tombstone.
 * - `key_versions`: each version's AES-256 data key, only ever stored
 *   wrapped by a master key version (`master_key_id`). Destroying a ring
 *   sets `wrapped_key` to null: the key is gone for good.
 */
export class Migration20261215100000 extends Migration {
  override up(): void {
    this.addSql(`create table key_rings (
      id text primary key,
      tenant_id text null,
      kind text not null check (kind in ('tenant', 'subject', 'service')),
      subject_id text null,
      scope text not null unique,
      current_version integer not null,
      min_decrypt_version integer not null default 1,
      state text not null default 'enabled' check (state in ('enabled', 'destroyed')),
      destroy_reason text not null default '',
      created_at timestamptz not null,
      rotated_at timestamptz not null,
      destroyed_at timestamptz null,
      check ((kind = 'service') = (tenant_id is null)),
      check ((kind = 'tenant') = (subject_id is null))
    )`);
    this.addSql("create index key_rings_rotation_idx on key_rings (rotated_at) where state = 'enabled'");
    for (const sql of tenantIsolationSql("key_rings")) this.addSql(sql);

    this.addSql(`create table key_versions (
      ring_id text not null references key_rings (id),
      version integer not null,
      tenant_id text null,
      wrapped_key bytea null,
      master_key_id text null,
      created_at timestamptz not null,
      destroyed_at timestamptz null,
      primary key (ring_id, version),
      check ((wrapped_key is null) = (destroyed_at is not null))
    )`);
    this.addSql("create index key_versions_master_idx on key_versions (master_key_id) where wrapped_key is not null");
    for (const sql of tenantIsolationSql("key_versions")) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists key_versions");
    this.addSql("drop table if exists key_rings");
  }
}
