import { Migration } from "@mikro-orm/migrations";

/**
 * Rectifications that name their corrections: the values sealed like an
 * export's documents (AES-256-GCM under a data key from keys, wrapped key
 * inline) in `corrections`, deleted when the request ends; the field names
 * alone, which say nothing about the person, in `corrected_fields`; and
 * `saga_finished_at`, set when the saga has run and left a correction for
 * an officer to make by hand (CompleteRectification).
 */
export class Migration20261223100000 extends Migration {
  override up(): void {
    this.addSql("alter table dsr_requests add column corrections bytea null, add column corrected_fields text[] not null default '{}', add column saga_finished_at timestamptz null");
  }

  override down(): void {
    this.addSql("alter table dsr_requests drop column if exists corrections, drop column if exists corrected_fields, drop column if exists saga_finished_at");
  }
}
