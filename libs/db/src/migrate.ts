import { MikroORM, type MigrationObject } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { PostgreSqlDriver } from "@mikro-orm/postgresql";
import { MigrationError } from "./errors.js";
import { quoteIdent, withDatabase } from "./identifiers.js";
import { provisionService, type ServiceDatabaseSpec } from "./provision.js";

/** A service's provisioning spec plus its committed migrations, oldest first. */
export interface MigrateOptions extends ServiceDatabaseSpec {
  /** Migration classes listed explicitly (no glob), e.g. `{ name: "Migration20260101", class: Migration20260101 }`. */
  readonly migrations: readonly MigrationObject[];
  /** Name of the table recording applied migrations, inside the schema. */
  readonly tableName?: string;
}

/**
 * Provisions the service's database, roles and schema, then applies the
 * pending migrations. Every connection switches to the owner role first,
 * so the tables belong to the owner and the app role stays a mere user of
 * them; `search_path` is the schema, so migrations write plain table names.
 * All pending migrations apply in one transaction or not at all.
 * Returns the names of the migrations it applied (empty when up to date).
 */
export async function migrate(options: MigrateOptions): Promise<string[]> {
  await provisionService(options);
  const owner = quoteIdent(options.ownerRole, "ownerRole");
  const schema = quoteIdent(options.schema, "schema");
  const sessionSql = `set role ${owner}; set search_path to ${schema}`;

  let orm: MikroORM;
  try {
    orm = await MikroORM.init({
      driver: PostgreSqlDriver,
      clientUrl: withDatabase(options.adminUrl, options.database),
      schema: options.schema,
      entities: [],
      discovery: { warnWhenNoEntities: false },
      ensureDatabase: false,
      allowGlobalContext: true,
      debug: false,
      extensions: [Migrator],
      pool: {
        min: 0,
        max: 2,
        afterCreate: (conn: SessionClient, done: (err: Error | null, conn: SessionClient) => void) => {
          conn.query(sessionSql, (err) => done(err, conn));
        },
      },
      migrations: {
        migrationsList: [...options.migrations],
        tableName: options.tableName ?? "mikro_orm_migrations",
        transactional: true,
        allOrNothing: true,
        disableForeignKeys: false,
        snapshot: false,
        silent: true,
      },
    });
  } catch (cause) {
    throw new MigrationError(`cannot open the migration connection for schema ${options.schema}`, { cause });
  }
  try {
    const applied = await orm.getMigrator().up();
    return applied.map((m) => m.name);
  } catch (cause) {
    throw new MigrationError(`migrations of schema ${options.schema} failed; none were applied`, { cause });
  } finally {
    await orm.close(true);
  }
}

/** The slice of a pg client that the pool's `afterCreate` hook uses. */
interface SessionClient {
  query(sql: string, callback: (err: Error | null) => void): void;
}
