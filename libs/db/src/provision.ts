import pg from "pg";
import { MigrationError } from "./errors.js";
import { quoteIdent, redactUrl, withDatabase } from "./identifiers.js";

/** Where a service's data lives and which roles own and use it. */
export interface ServiceDatabaseSpec {
  /** A superuser (or CREATEROLE + CREATEDB) URL; its database part is ignored. */
  readonly adminUrl: string;
  readonly database: string;
  /** The service's schema, e.g. `tenancy`. */
  readonly schema: string;
  /** NOLOGIN role that owns the schema and every table in it. */
  readonly ownerRole: string;
  /** LOGIN role the service connects as: owns nothing, bound by RLS. */
  readonly appRole: string;
  /** Optional password for the app role; without it the role relies on the server's auth rules. */
  readonly appPassword?: string | undefined;
}

/**
 * The table comment that marks a table append-only: provisioning, which
 * grants the app role every DML privilege on the schema's tables, then
 * revokes UPDATE, DELETE and TRUNCATE on these again.
 */
export const appendOnlyComment = "bulwark:append-only";

const duplicateDatabase = "42P04";
const duplicateObject = "42710";
const uniqueViolation = "23505";

/**
 * Creates (or repairs) the database, the owner and app roles, the schema and
 * every grant, so a service's app role can read and write its tables but
 * never own, alter or bypass them. Idempotent and safe to run concurrently
 * from several services: it only adds what is missing and re-asserts the
 * attributes that RLS depends on (NOBYPASSRLS, NOSUPERUSER).
 */
export async function provisionService(spec: ServiceDatabaseSpec): Promise<void> {
  const db = quoteIdent(spec.database, "database");
  const schema = quoteIdent(spec.schema, "schema");
  const owner = quoteIdent(spec.ownerRole, "ownerRole");
  const app = quoteIdent(spec.appRole, "appRole");
  if (spec.ownerRole === spec.appRole) throw new MigrationError("ownerRole and appRole must differ");

  await withClient(withDatabase(spec.adminUrl, "postgres"), "create the database", async (client) => {
    const exists = await client.query("select 1 from pg_database where datname = $1", [spec.database]);
    if (exists.rowCount === 0) await ignoring([duplicateDatabase, uniqueViolation], client.query(`create database ${db}`));
  });

  await withClient(withDatabase(spec.adminUrl, spec.database), `provision schema ${spec.schema}`, async (client) => {
    await client.query("begin");
    try {
      await client.query("select pg_advisory_xact_lock(hashtext('bulwark.provision'))");
      await ensureRole(client, spec.ownerRole, `create role ${owner} nologin`);
      await ensureRole(client, spec.appRole, `create role ${app} login`);
      await client.query(`alter role ${owner} nologin nosuperuser nobypassrls`);
      await client.query(`alter role ${app} login nosuperuser nobypassrls nocreatedb nocreaterole`);
      if (spec.appPassword !== undefined) {
        await client.query(`alter role ${app} password ${client.escapeLiteral(spec.appPassword)}`);
      }
      await client.query(`grant ${owner} to current_user`);
      await client.query(`create schema if not exists ${schema} authorization ${owner}`);
      await client.query(`alter schema ${schema} owner to ${owner}`);
      await client.query(`revoke all on schema ${schema} from public`);
      await client.query(`grant connect on database ${db} to ${app}`);
      await client.query(`grant usage on schema ${schema} to ${app}`);
      await client.query(`grant select, insert, update, delete on all tables in schema ${schema} to ${app}`);
      await client.query(`grant usage, select on all sequences in schema ${schema} to ${app}`);
      await client.query(
        `alter default privileges for role ${owner} in schema ${schema} grant select, insert, update, delete on tables to ${app}`,
      );
      await client.query(`alter default privileges for role ${owner} in schema ${schema} grant usage, select on sequences to ${app}`);
      // Tables a migration marked append-only (audit's trail) keep only SELECT and INSERT for the app role.
      await client.query(
        `select format('revoke update, delete, truncate on %I.%I from %I', n.nspname, c.relname, $2::text) as sql from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = $1 and c.relkind in ('r', 'p') and obj_description(c.oid, 'pg_class') = '${appendOnlyComment}'`,
        [spec.schema, spec.appRole],
      ).then(async (r: { rows: { sql: string }[] }) => {
        for (const { sql } of r.rows) await client.query(sql);
      });
      await client.query("commit");
    } catch (err) {
      await client.query("rollback").catch(() => undefined);
      throw err;
    }
  });
}

/**
 * Creates a role unless it exists. Roles are cluster-wide while the advisory
 * lock is per database, so a provisioner of another database may win the
 * race; a savepoint keeps that loss from aborting the transaction.
 */
async function ensureRole(client: pg.Client, role: string, createSql: string): Promise<void> {
  const exists = await client.query("select 1 from pg_roles where rolname = $1", [role]);
  if (exists.rowCount !== 0) return;
  await client.query("savepoint ensure_role");
  try {
    await client.query(createSql);
    await client.query("release savepoint ensure_role");
  } catch (err) {
    await client.query("rollback to savepoint ensure_role");
    if (![duplicateObject, uniqueViolation].includes((err as { code?: string }).code ?? "")) throw err;
  }
}

/** Awaits a statement, treating "already exists" races with another provisioner as success. */
async function ignoring(codes: string[], query: Promise<unknown>): Promise<void> {
  try {
    await query;
  } catch (err) {
    if (!codes.includes((err as { code?: string }).code ?? "")) throw err;
  }
}

async function withClient(url: string, step: string, fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (cause) {
    await client.end().catch(() => undefined);
    throw new MigrationError(`cannot reach Postgres at ${redactUrl(url)} to ${step}`, { cause });
  }
  try {
    await fn(client);
  } catch (cause) {
    throw new MigrationError(`failed to ${step}`, { cause });
  } finally {
    await client.end().catch(() => undefined);
  }
}
