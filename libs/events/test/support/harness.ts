import pg from "pg";
import { nuid } from "@nats-io/nuid";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { MeshKeys } from "@bulwark/core";
import { Database, migrate } from "@bulwark/db";
import { EventPublisher, EventsMigration20260101, ensureStream, type EventsLogger } from "../../src/index.js";

const adminUrl = process.env["BULWARK_TEST_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = process.env["BULWARK_TEST_DATABASE"] ?? "bulwark_test";
const natsUrl = process.env["BULWARK_TEST_NATS_URL"] ?? "127.0.0.1:4222";

/** Everything one test file needs: its own schema, roles, stream and subject prefix. */
export interface Harness {
  readonly db: Database;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly stream: string;
  readonly prefix: string;
  readonly publisher: EventPublisher;
  /** Runs one query as the superuser on the test database. */
  adminQuery<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]>;
  teardown(): Promise<void>;
}

/** Collects log lines instead of printing them, so tests can assert on them. */
export const quietLogger: EventsLogger & { lines: string[] } = {
  lines: [],
  warn(fields, message) {
    this.lines.push(`${message} ${JSON.stringify(fields)}`);
  },
  error(fields, message) {
    this.lines.push(`${message} ${JSON.stringify(fields)}`);
  },
};

/** Provisions a fresh schema with the event tables, opens the app connection, and creates a unique stream. */
export async function setUp(label: string): Promise<Harness> {
  const id = nuid.next().toLowerCase();
  const schema = `t_${label}_${id}`;
  const ownerRole = `${schema}_owner`;
  const appRole = `${schema}_app`;
  await migrate({ adminUrl, database, schema, ownerRole, appRole, migrations: [{ name: "EventsMigration20260101", class: EventsMigration20260101 }] });
  const appUrl = new URL(adminUrl);
  appUrl.username = appRole;
  appUrl.pathname = `/${database}`;
  const db = await Database.open({ clientUrl: appUrl.toString(), schema, entities: [], poolMax: 8 });
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const prefix = `t${id}`;
  const stream = `T_${id.toUpperCase()}`;
  await ensureStream(jsm, { name: stream, subjects: [`${prefix}.>`] });
  const adminDbUrl = new URL(adminUrl);
  adminDbUrl.pathname = `/${database}`;

  async function adminQuery<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: adminDbUrl.toString() });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  return {
    db,
    nc,
    js,
    jsm,
    stream,
    prefix,
    publisher: new EventPublisher({ service: "test", subjectPrefix: prefix, keys: MeshKeys.development("test") }),
    adminQuery,
    async teardown() {
      await jsm.streams.delete(stream).catch(() => undefined);
      await nc.drain();
      await db.close();
      await adminQuery(`drop schema if exists "${schema}" cascade`);
      for (const role of [appRole, ownerRole]) {
        await adminQuery(`drop owned by "${role}" cascade`).catch(() => undefined);
        await adminQuery(`drop role if exists "${role}"`);
      }
    },
  };
}

/** Polls `check` until it holds or the timeout passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
