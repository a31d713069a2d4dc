import pg from "pg";
import { nuid } from "@nats-io/nuid";

/** The superuser URL of the local test Postgres. */
export const adminUrl = process.env["BULWARK_TEST_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
/** The database every test schema lives in. */
export const database = process.env["BULWARK_TEST_DATABASE"] ?? "bulwark_test";

/** A throwaway schema and its two roles, named uniquely per test file. */
export interface Scratch {
  readonly schema: string;
  readonly ownerRole: string;
  readonly appRole: string;
  readonly appUrl: string;
}

/** Unique names for one test file's schema and roles. */
export function scratch(label: string): Scratch {
  const id = nuid.next().toLowerCase();
  const schema = `t_${label}_${id}`;
  const url = new URL(adminUrl);
  url.username = `${schema}_app`;
  url.pathname = `/${database}`;
  return { schema, ownerRole: `${schema}_owner`, appRole: `${schema}_app`, appUrl: url.toString() };
}

/** Runs one query as the superuser on the test database. */
export async function adminQuery<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Drops the schema and both roles (their privileges first). */
export async function dropScratch(s: Scratch): Promise<void> {
  await adminQuery(`drop schema if exists "${s.schema}" cascade`);
  for (const role of [s.appRole, s.ownerRole]) {
    await adminQuery(`drop owned by "${role}" cascade`).catch(() => undefined);
    await adminQuery(`drop role if exists "${role}"`);
  }
}
