import { Migration } from "@mikro-orm/migrations";
import { runAsPlatform } from "@bulwark/core";
import type { Database } from "./database.js";

/**
 * A service's own durable facts about the mesh, one row per fact, that must
 * survive the loss of the NATS stream that first announced them — today
 * that the bootstrap credential is retired. Platform data (no tenant): read
 * and written only in the explicit platform scope. Add it to each service's
 * migration list.
 */
export class RuntimeStateMigration20261201 extends Migration {
  override up(): void {
    this.addSql(`create table runtime_state (
      key text primary key,
      tenant_id text null check (tenant_id is null),
      value text not null,
      updated_at timestamptz not null default now()
    )`);
    this.addSql("alter table runtime_state enable row level security");
    this.addSql("create policy platform_only on runtime_state using (current_setting('app.platform', true) = 'on') with check (current_setting('app.platform', true) = 'on')");
  }

  override down(): void {
    this.addSql("drop table if exists runtime_state");
  }
}

/** The value of a runtime fact, if it was ever recorded. */
export async function readRuntimeState(db: Database, key: string): Promise<string | undefined> {
  const rows = await runAsPlatform(`read the runtime fact ${key}`, () => db.transaction((em) => em.execute<{ value: string }[]>("select value from runtime_state where key = ?", [key])));
  return rows[0]?.value;
}

/** Records a runtime fact once; a fact recorded stays (the first value wins). */
export async function recordRuntimeState(db: Database, key: string, value: string): Promise<void> {
  await runAsPlatform(`record the runtime fact ${key}`, () => db.transaction((em) => em.execute("insert into runtime_state (key, tenant_id, value) values (?, null, ?) on conflict (key) do nothing", [key, value])));
}
