import { Migration } from "@mikro-orm/migrations";
import { appendOnlyComment, tenantIsolationSql, tenantPredicateSql } from "@bulwark/db";

/**
 * The audit trail's storage, append-only by construction.
 *
 * - `entries`: one row per recorded action, declaratively range-partitioned
 *   by the month it was recorded (`entries_yYYYYmMM`, created ahead by the
 *   partitions job through `audit_ensure_partition`, a SECURITY DEFINER
 *   function of the owner, since the runtime role may create nothing). The
 *   columns other than `leaf` are copies for the ListEntries filters; the
 *   entry itself is `leaf`, the exact bytes hashed into the tenant's tree.
 * - `leaves`: each tenant's Merkle leaves in order (leaf hash, entry id,
 *   month), kept after retention removes an entry so that the remaining
 *   ones stay provable; `tree_nodes`: the hash of every complete subtree
 *   (level, index), so any proof at any size is a few reads.
 * - `checkpoints`: every signed tree head, one per (tenant, size): a size is
 *   never signed with another root.
 * - `signing_keys`: audit's Ed25519 checkpoint key, sealed under audit's
 *   service ring in the keys service (no tenant: platform scope only);
 *   `hash_keys`: each tenant's HMAC key for keyed hashes of sensitive
 *   values, sealed under the tenant's ring.
 *
 * Row-level security by tenant on every tenant table. The runtime role
 * keeps only SELECT and INSERT on all of them (provisioning grants more;
 * revoked here), and has no UPDATE or DELETE policy, so even a re-granted
 * privilege matches no row. A trigger refuses UPDATE, DELETE and TRUNCATE
 * to everyone but the retention role `<runtime role>_retention` (NOLOGIN,
 * created here; the retention job `SET ROLE`s to it, see
 * `retentionRoleOf`), superusers included unless they disable triggers.
 */
export class Migration20261220100000 extends Migration {
  override up(): void {
    // The retention role is cluster-wide: created as the session (admin) user, then back to the owner.
    this.addSql(`do $$
      declare
        owner_role text := current_user;
        retention text := regexp_replace(current_user, '_owner$', '') || '_retention';
        app text := regexp_replace(current_user, '_owner$', '');
      begin
        execute 'reset role';
        if not exists (select 1 from pg_roles where rolname = retention) then
          execute format('create role %I nologin nosuperuser nobypassrls', retention);
        end if;
        execute format('grant %I to %I', retention, owner_role);
        execute format('set role %I', owner_role);
        execute format('grant usage on schema %I to %I', current_schema(), retention);
      end $$`);

    this.addSql(`create table entries (
      tenant_id text not null,
      leaf_index bigint not null,
      entry_id text not null,
      event_id text not null,
      recorded_at timestamptz not null,
      occurred_at timestamptz not null,
      actor_type smallint not null,
      actor_id text not null,
      action text not null,
      resource_type text not null,
      resource_id text not null,
      outcome smallint not null,
      leaf bytea not null,
      primary key (tenant_id, recorded_at, leaf_index)
    ) partition by range (recorded_at)`);
    this.addSql("create index entries_entry_idx on entries (tenant_id, entry_id)");
    this.addSql("create index entries_leaf_idx on entries (tenant_id, leaf_index)");
    this.addSql("create index entries_actor_idx on entries (tenant_id, actor_id, recorded_at desc, leaf_index desc)");
    this.addSql("create index entries_action_idx on entries (tenant_id, action text_pattern_ops, recorded_at desc, leaf_index desc)");
    this.addSql("create index entries_resource_idx on entries (tenant_id, resource_type, resource_id, recorded_at desc, leaf_index desc)");
    this.addSql("create index entries_outcome_idx on entries (tenant_id, outcome, recorded_at desc, leaf_index desc) where outcome <> 1");

    this.addSql(`create table leaves (
      tenant_id text not null,
      leaf_index bigint not null,
      entry_id text not null,
      leaf_hash bytea not null,
      recorded_at timestamptz not null,
      primary key (tenant_id, leaf_index)
    )`);
    this.addSql("create unique index leaves_entry_idx on leaves (tenant_id, entry_id)");
    this.addSql(`create table tree_nodes (
      tenant_id text not null,
      level smallint not null,
      idx bigint not null,
      hash bytea not null,
      primary key (tenant_id, level, idx)
    )`);
    this.addSql(`create table checkpoints (
      tenant_id text not null,
      size bigint not null,
      root_hash bytea not null,
      note text not null,
      signed_at timestamptz not null,
      primary key (tenant_id, size)
    )`);
    this.addSql(`create table hash_keys (
      tenant_id text primary key,
      sealed bytea not null,
      created_at timestamptz not null
    )`);
    this.addSql(`create table signing_keys (
      id text primary key,
      tenant_id text null check (tenant_id is null),
      public_key bytea not null,
      sealed bytea not null,
      created_at timestamptz not null
    )`);
    for (const t of ["leaves", "tree_nodes", "checkpoints", "hash_keys", "signing_keys"]) for (const sql of tenantIsolationSql(t)) this.addSql(sql);
    this.addSql(appendOnlyPoliciesSql("entries"));
    // Provisioning re-grants DML on every table at each migrate; these keep only SELECT and INSERT.
    for (const t of ["entries", "leaves", "tree_nodes", "checkpoints", "hash_keys", "signing_keys"]) this.addSql(`comment on table ${t} is '${appendOnlyComment}'`);

    // The retention role is `<app>_retention` where the schema's owner is `<app>_owner`.
    this.addSql(`create function audit_refuse_change() returns trigger language plpgsql as $$
      declare retention text;
      begin
        select regexp_replace(nspowner::regrole::text, '_owner$', '') || '_retention' into retention from pg_namespace where nspname = tg_table_schema;
        if current_user::text = retention and tg_op = 'DELETE' then return old; end if;
        if current_user::text = retention and tg_op = 'TRUNCATE' then return null; end if;
        raise exception 'the audit trail is append-only: % refused', tg_op using errcode = '42501';
      end $$`);
    for (const t of ["entries", "leaves", "tree_nodes", "checkpoints", "signing_keys", "hash_keys"]) {
      this.addSql(`create trigger ${t}_append_only before update or delete on ${t} for each row execute function audit_refuse_change()`);
      if (t !== "entries") this.addSql(`create trigger ${t}_no_truncate before truncate on ${t} for each statement execute function audit_refuse_change()`);
    }

    // Partitions are created by the owner through this function (the runtime role may only call it).
    this.addSql(`create function audit_ensure_partition(at timestamptz) returns text language plpgsql security definer set search_path from current as $$
      declare
        m date := date_trunc('month', at at time zone 'UTC')::date;
        name text := format('entries_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
        app text := regexp_replace(current_user, '_owner$', '');
      begin
        if to_regclass(name) is null then
          execute format('create table %I partition of entries for values from (%L) to (%L)', name, (m::timestamp at time zone 'UTC'), ((m + interval '1 month')::timestamp at time zone 'UTC'));
          execute format('revoke all on %I from %I', name, app);
          execute format('alter table %I enable row level security', name);
          execute format('create policy tenant_read on %I for select using ${tenantPredicateSql.replaceAll("'", "''")}', name);
          execute format('create policy retention_delete on %I for delete to %I using (true)', name, app || '_retention');
          execute format('grant select, delete on %I to %I', name, app || '_retention');
          execute format('create trigger %I before truncate on %I for each statement execute function audit_refuse_change()', name || '_no_truncate', name);
        end if;
        return name;
      end $$`);
    // Retention drops a whole month when every entry in it expired: only the retention role may call this.
    this.addSql(`create function audit_drop_partition(name text) returns void language plpgsql security definer set search_path from current as $$
      begin
        if name !~ '^entries_y[0-9]{4}m[0-9]{2}$' or to_regclass(name) is null then
          raise exception 'not an entries partition: %', name using errcode = '22023';
        end if;
        execute format('alter table entries detach partition %I', name);
        execute format('drop table %I', name);
      end $$`);
    this.addSql(`do $$
      declare app text := regexp_replace(current_user, '_owner$', '');
      begin
        execute format('revoke all on function audit_ensure_partition(timestamptz) from public');
        execute format('grant execute on function audit_ensure_partition(timestamptz) to %I', app);
        execute format('revoke update, delete, truncate on entries, leaves, tree_nodes, checkpoints, hash_keys, signing_keys from %I', app);
        execute format('grant select, delete on entries, leaves to %I', app || '_retention');
        execute format('grant select on tree_nodes, checkpoints to %I', app || '_retention');
        execute format('revoke all on function audit_drop_partition(text) from public');
        execute format('grant execute on function audit_drop_partition(text) to %I', app || '_retention');
        perform audit_ensure_partition(now() + (n || ' month')::interval) from generate_series(-1, 2) as n;
      end $$`);
  }

  override down(): void {
    for (const t of ["signing_keys", "hash_keys", "checkpoints", "tree_nodes", "leaves", "entries"]) this.addSql(`drop table if exists ${t} cascade`);
    this.addSql("drop function if exists audit_ensure_partition(timestamptz)");
    this.addSql("drop function if exists audit_drop_partition(text)");
    this.addSql("drop function if exists audit_refuse_change()");
  }
}

/** Tenant isolation for reading and inserting only; deleting is the retention role's, updating nobody's. */
function appendOnlyPoliciesSql(table: string): string {
  return `do $$
    declare app text := regexp_replace(current_user, '_owner$', '');
    begin
      execute 'alter table ${table} enable row level security';
      execute 'create policy tenant_read on ${table} for select using ${tenantPredicateSql.replaceAll("'", "''")}';
      execute 'create policy tenant_append on ${table} for insert with check ${tenantPredicateSql.replaceAll("'", "''")}';
      execute format('create policy retention_delete on ${table} for delete to %I using (true)', app || '_retention');
    end $$`;
}
