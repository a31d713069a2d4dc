import { loadConfig } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { migrateService } from "@bulwark/server";
import pg from "pg";
import { identityModule } from "../../src/module.js";

const adminUrl = process.env["BULWARK_TEST_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = process.env["BULWARK_TEST_DATABASE"] ?? "bulwark_test";

/** Identity's schema migrated into a throwaway schema of the test database, opened as its login role. */
export interface ScratchIdentityDb {
  readonly db: Database;
  /** Closes the connection and drops the schema and both roles. */
  drop(): Promise<void>;
}

async function admin(sql: string): Promise<void> {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const c = new pg.Client({ connectionString: url.toString() });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Migrates identity into a fresh schema named after `label` and opens it. */
export async function scratchIdentityDb(label: string): Promise<ScratchIdentityDb> {
  const schema = `t_${label}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const app = new URL(adminUrl);
  app.username = `${schema}_app`;
  app.pathname = `/${database}`;
  const adm = new URL(adminUrl);
  adm.pathname = `/${database}`;
  const config = loadConfig("identity", { NODE_ENV: "test", DATABASE_URL: app.toString(), DATABASE_ADMIN_URL: adm.toString(), DATABASE_SCHEMA: schema });
  await migrateService(identityModule, config);
  const db = await Database.open({ clientUrl: app.toString(), schema, entities: [...identityModule.entities], poolMax: 4 });
  return {
    db,
    async drop() {
      await db.close();
      await admin(`drop schema if exists "${schema}" cascade`);
      for (const role of [`${schema}_app`, `${schema}_app_owner`]) {
        await admin(`drop owned by "${role}" cascade`).catch(() => undefined);
        await admin(`drop role if exists "${role}"`).catch(() => undefined);
      }
    },
  };
}
