import { createHash } from "node:crypto";
import { currentContext, describeError, type CallContext } from "@bulwark/core";
import { MikroORM, PostgreSqlDriver, type AbstractSqlConnection, type EntityManager, type Options } from "@mikro-orm/postgresql";
import type pg from "pg";
import { DatabaseUnavailableError } from "./errors.js";
import { quoteIdent, redactUrl } from "./identifiers.js";

/** How a service connects to its schema. */
export interface DatabaseOptions {
  /** The app role's URL (never the admin's: RLS only binds a non-owner). */
  readonly clientUrl: string;
  readonly schema: string;
  /** `defineEntity` schemas of the service. */
  readonly entities: NonNullable<Options["entities"]>;
  /** Log every query; for local debugging only. */
  readonly debug?: boolean;
  readonly poolMax?: number;
  /** How long a checkout may wait for a free connection before failing. */
  readonly acquireTimeoutMs?: number;
  /** Where the driver's own warnings go (never the console). */
  readonly logger?: DriverLogger;
}

/**
 * A service's handle on Postgres. Every unit of work goes through
 * `transaction`, which scopes the transaction to the caller's tenant (or to
 * the explicit platform scope) before running any query, so row-level
 * security, not the query text, decides which rows a call can see.
 */
export class Database {
  private constructor(
    /** The MikroORM instance, for wiring that needs it (schema tools, the migrator). */
    readonly orm: MikroORM,
    /** The schema every table of this service lives in. */
    readonly schema: string,
  ) {}

  /**
   * Connects as the app role and fails fast, with a message naming host and
   * database only, if Postgres is unreachable at start-up; later outages are
   * reported by `ping` and surface per request.
   */
  static async open(options: DatabaseOptions): Promise<Database> {
    const searchPath = `set search_path to ${quoteIdent(options.schema, "schema")}`;
    let orm: MikroORM;
    try {
      orm = await MikroORM.init({
        driver: PostgreSqlDriver,
        clientUrl: options.clientUrl,
        schema: options.schema,
        entities: options.entities,
        discovery: { warnWhenNoEntities: false },
        ensureDatabase: false,
        allowGlobalContext: false,
        debug: options.debug ?? false,
        pool: {
          min: 0,
          max: options.poolMax ?? 10,
          idleTimeoutMillis: 30_000,
          afterCreate: (conn: SessionClient, done: (err: Error | null, conn: SessionClient) => void) => {
            conn.query(searchPath, (err) => done(err, conn));
          },
        },
        driverOptions: {
          // knex logs connection trouble to the console by default; route it
          // through the service's structured logger, SQL redacted.
          log: knexLog(options.logger),
          acquireConnectionTimeout: options.acquireTimeoutMs ?? 10_000,
          connection: { connectionTimeoutMillis: 5_000 },
        },
      });
    } catch (cause) {
      throw new DatabaseUnavailableError(`cannot initialise the database layer for ${redactUrl(options.clientUrl)}`, { cause });
    }
    const check = await orm.checkConnection();
    if (!check.ok) {
      await orm.close(true).catch(() => undefined);
      throw new DatabaseUnavailableError(`cannot connect to Postgres at ${redactUrl(options.clientUrl)}`, { cause: check.error });
    }
    return new Database(orm, options.schema);
  }

  /**
   * Runs `fn` in one transaction on one connection, whose first statement
   * scopes it: `app.platform = on` inside `runAsPlatform`, else
   * `app.tenant_id` from the call context. With neither, the transaction
   * still runs but RLS shows it no rows and refuses its writes, which is the
   * safe failure for code that forgot to establish a scope.
   */
  async transaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const ctx = currentContext();
    return this.orm.em.fork().transactional(async (em) => {
      if (ctx?.platformReason !== undefined) {
        await em.execute("select set_config('app.platform', 'on', true)");
      }
      if (ctx?.tenantId !== undefined && ctx.tenantId !== "") {
        await em.execute("select set_config('app.tenant_id', ?, true)", [ctx.tenantId]);
      }
      return fn(em);
    });
  }

  /**
   * The same transaction as `transaction` — one connection, scoped first to
   * the platform or the caller's tenant — for hot paths that run a few
   * fixed statements and need no entity: statements go straight to the
   * Postgres driver on a connection of the same pool (MikroORM and knex add
   * about a millisecond of CPU per transaction), prepared once per
   * connection, and the scope is set in the same round trip as BEGIN.
   * Driver errors come out as MikroORM's exceptions, so the error mapping
   * is the same as for `transaction`.
   *
   * `settings` adds transaction-local settings (`app.*` names only) that a
   * table's own row-level-security policy may grant access on — one table's
   * rows for one purpose, rather than the whole platform scope.
   *
   * `durable: false` commits without waiting for the WAL flush
   * (`synchronous_commit = off`): a Postgres crash can lose the last few
   * hundred milliseconds of such commits, never corrupt them. Only for
   * writes whose loss is harmless (counters, marks that are redone).
   */
  async sql<T>(fn: (sql: Sql) => Promise<T>, options: { settings?: Readonly<Record<string, string>>; durable?: boolean } = {}): Promise<T> {
    const scope = scopeStatement(currentContext(), options.settings ?? {}, options.durable ?? true);
    const knex = (this.orm.em.getConnection() as AbstractSqlConnection).getKnex();
    const convert = (err: unknown): unknown => (err instanceof Error && "code" in err ? this.orm.em.getDriver().convertException(err) : err);
    let conn: pg.Client;
    try {
      conn = (await knex.client.acquireConnection()) as pg.Client;
    } catch (err) {
      throw convert(err);
    }
    try {
      await conn.query(`begin; ${scope(conn)}`);
      const result = await fn({
        execute: async <R extends object[]>(text: string, params: readonly unknown[] = []) => {
          const prepared = positional(text);
          return (await conn.query({ name: prepared.name, text: prepared.text, values: params as unknown[] })).rows as R;
        },
      });
      await conn.query("commit");
      return result;
    } catch (err) {
      await conn.query("rollback").catch(() => undefined);
      throw convert(err);
    } finally {
      knex.client.releaseConnection(conn);
    }
  }

  /**
   * A fresh EntityManager with its own identity map, for code that manages
   * its own transaction. Queries outside `transaction` carry no tenant scope,
   * so under RLS they see nothing; prefer `transaction`.
   */
  em(): EntityManager {
    return this.orm.em.fork();
  }

  /** For health checks: true when Postgres answers within the timeout; never throws. */
  async ping(timeoutMs = 2_000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      const query = this.orm.em
        .fork()
        .getConnection()
        .execute("select 1")
        .then(
          () => true,
          () => false,
        );
      return await Promise.race([query, timeout]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The connection pool's occupancy (knex's tarn pool under MikroORM), for
   * metrics: connections in use, idle, and checkouts waiting for one.
   */
  poolStats(): PoolStats {
    const pool = (this.orm.em.getDriver().getConnection() as unknown as { getKnex(): { client: { pool?: TarnPool } } }).getKnex().client.pool;
    if (pool === undefined) return { used: 0, free: 0, pendingAcquires: 0, pendingCreates: 0, max: 0 };
    return { used: pool.numUsed(), free: pool.numFree(), pendingAcquires: pool.numPendingAcquires(), pendingCreates: pool.numPendingCreates(), max: pool.max };
  }

  /** Closes every pooled connection; call once on shutdown. */
  async close(): Promise<void> {
    await this.orm.close(true);
  }
}

/** A snapshot of the connection pool (see `Database.poolStats`). */
export interface PoolStats {
  readonly used: number;
  readonly free: number;
  readonly pendingAcquires: number;
  readonly pendingCreates: number;
  /** The pool's ceiling (DATABASE_POOL_MAX). */
  readonly max: number;
}

/** The slice of tarn's Pool (knex's pool) that `poolStats` reads. */
interface TarnPool {
  readonly max: number;
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  numPendingCreates(): number;
}

/**
 * What code that only runs statements needs of a transaction: a
 * `Database.sql` transaction or a `transaction`'s EntityManager, either.
 */
export type Statements = Pick<Sql, "execute">;

/** Runs statements inside one `Database.sql` transaction. */
export interface Sql {
  /**
   * Runs one statement with `?` placeholders (as `em.execute` takes them;
   * a `?` must not appear inside a literal) and returns its rows. Each
   * distinct text is prepared once per connection, so Postgres parses and
   * plans it once.
   */
  execute<R extends object[] = Record<string, unknown>[]>(text: string, params?: readonly unknown[]): Promise<R>;
}

/**
 * The scoping statement of a transaction for `ctx`, as `transaction` sets
 * it; values are escaped by the driver since they share BEGIN's round trip
 * (the simple protocol takes no parameters).
 */
function scopeStatement(ctx: CallContext | undefined, settings: Readonly<Record<string, string>>, durable: boolean): (conn: pg.Client) => string {
  for (const name of Object.keys(settings)) {
    if (!/^app\.[a-z_]+$/.test(name) || name === "app.platform" || name === "app.tenant_id") throw new Error(`not a transaction setting a caller may set: ${name}`);
  }
  return (conn) => {
    const parts: string[] = [];
    if (ctx?.platformReason !== undefined) parts.push("set_config('app.platform', 'on', true)");
    if (ctx?.tenantId !== undefined && ctx.tenantId !== "") parts.push(`set_config('app.tenant_id', ${conn.escapeLiteral(ctx.tenantId)}, true)`);
    for (const [name, value] of Object.entries(settings)) parts.push(`set_config(${conn.escapeLiteral(name)}, ${conn.escapeLiteral(value)}, true)`);
    if (!durable) parts.push("set_config('synchronous_commit', 'off', true)");
    return parts.length === 0 ? "" : `select ${parts.join(", ")}`;
  };
}

const preparedTexts = new Map<string, { name: string; text: string }>();

/** `?` placeholders as `$1, $2, …`, and a statement name derived from the text. */
function positional(text: string): { name: string; text: string } {
  let p = preparedTexts.get(text);
  if (p === undefined) {
    let n = 0;
    const converted = text.replace(/\?/g, () => `$${++n}`);
    p = { name: `b_${createHash("sha256").update(converted).digest("hex").slice(0, 24)}`, text: converted };
    if (preparedTexts.size > 1_000) preparedTexts.clear();
    preparedTexts.set(text, p);
  }
  return p;
}

/** The slice of a pg client that the pool's `afterCreate` hook uses. */
interface SessionClient {
  query(sql: string, callback: (err: Error | null) => void): void;
}

/** The structured logger knex's own messages go to (a pino logger fits). */
export interface DriverLogger {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

function knexLog(logger: DriverLogger | undefined): Record<string, (message: unknown) => void> {
  const text = (message: unknown): { message: string } => describeError(message instanceof Error ? message : new Error(String(message)));
  return {
    warn: (m) => logger?.warn({ source: "knex", ...text(m) }, "database driver warning"),
    error: (m) => logger?.warn({ source: "knex", ...text(m) }, "database driver error"),
    deprecate: (m) => logger?.debug({ source: "knex", ...text(m) }, "database driver deprecation"),
    debug: (m) => logger?.debug({ source: "knex", ...text(m) }, "database driver debug"),
  };
}
