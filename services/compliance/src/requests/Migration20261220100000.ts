import { Migration } from "@mikro-orm/migrations";
import { tenantIsolationSql } from "@bulwark/db";

/**
 * Data-subject requests, each service's step of one, and legal holds, all
 * under tenant isolation. No personal data of the subject is stored in
 * plaintext: the subject is named by user id, and an export's documents and
 * bundle are AES-256-GCM under a data key from the keys service (its
 * wrapped form in `export_wrapped_key`).
 */
export class Migration20261220100000 extends Migration {
  override up(): void {
    this.addSql(`create table dsr_requests (
      id text primary key,
      tenant_id text not null,
      type text not null check (type in ('export', 'erasure', 'rectification')),
      state text not null check (state in ('received', 'identity_verified', 'in_progress', 'completed', 'rejected', 'failed')),
      subject_id text not null,
      requested_by text not null,
      verified_by text null,
      verify_method text null,
      approved_by text null,
      details text not null default '',
      state_reason text not null default '',
      extension_months integer not null default 0,
      extension_reason text not null default '',
      created_at timestamptz not null,
      due_at timestamptz not null,
      completed_at timestamptz null,
      export_wrapped_key bytea null,
      export_bundle bytea null,
      export_sha256 text null,
      export_size bigint null,
      export_services text[] null,
      export_created_at timestamptz null,
      export_expires_at timestamptz null
    )`);
    this.addSql("create index dsr_requests_tenant_created_idx on dsr_requests (tenant_id, created_at desc, id desc)");
    this.addSql("create index dsr_requests_export_expiry_idx on dsr_requests (export_expires_at) where export_bundle is not null");
    this.addSql(`create table dsr_steps (
      request_id text not null references dsr_requests (id) on delete cascade,
      tenant_id text not null,
      service text not null,
      state text not null check (state in ('pending', 'retrying', 'done', 'failed')),
      attempts integer not null default 0,
      last_error text not null default '',
      next_attempt_at timestamptz not null,
      done_at timestamptz null,
      result jsonb not null default '{}',
      document bytea null,
      primary key (request_id, service)
    )`);
    this.addSql("create index dsr_steps_due_idx on dsr_steps (next_attempt_at) where state in ('pending', 'retrying')");
    this.addSql(`create table legal_holds (
      id text primary key,
      tenant_id text not null,
      category text not null,
      reason text not null,
      until_at timestamptz not null,
      created_by text not null,
      created_at timestamptz not null
    )`);
    this.addSql("create index legal_holds_tenant_idx on legal_holds (tenant_id, category)");
    for (const t of ["dsr_requests", "dsr_steps", "legal_holds"]) for (const sql of tenantIsolationSql(t)) this.addSql(sql);
  }

  override down(): void {
    this.addSql("drop table if exists dsr_steps");
    this.addSql("drop table if exists dsr_requests");
    this.addSql("drop table if exists legal_holds");
  }
}
