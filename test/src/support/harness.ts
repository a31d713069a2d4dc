/**
 * Starts real services for integration tests: each call gets its own
 * Postgres schema and roles (in the `bulwark_test` database), its own NATS
 * subject prefix, stream and KV bucket, and a server on an ephemeral port.
 * Nothing is mocked; `stop()` removes everything it created.
 */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { loadConfig, StaticTokenResolver, type Principal, type ServiceConfig } from "@bulwark/core";
import { openTenantStatusBucket } from "@bulwark/events";
import { migrateService, startService, streamOf, type RunningService, type ServiceModule } from "@bulwark/server";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { nuid } from "@nats-io/nuid";
import pg from "pg";
import { connect as netConnect, createServer, type AddressInfo } from "node:net";

export const adminUrl = process.env["BULWARK_TEST_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const testDatabase = process.env["BULWARK_TEST_DATABASE"] ?? "bulwark_test";
export const natsUrl = process.env["BULWARK_TEST_NATS_URL"] ?? "nats://127.0.0.1:4222";
export const bootstrapToken = "test-bootstrap-token-0123456789abcdef";
export const serviceSecret = "test-service-secret-0123456789abcdef-0123";

/** A service started for one test file. */
export interface Started {
  readonly running: RunningService;
  readonly config: ServiceConfig;
  readonly baseUrl: string;
  /** The subject prefix its events use (unique per start). */
  readonly prefix: string;
  /** Issues a bearer token for a principal (e.g. a tenant user). */
  issueToken(principal: Principal): string;
  stop(): Promise<void>;
}

/** Options for `startTestService`. */
export interface StartOptions {
  /** Reuse an existing schema/prefix (restart after a crash). */
  readonly reuse?: { schema: string; prefix: string };
  /** Keep the schema, stream and roles on stop (for a restart). */
  readonly keep?: boolean;
  /** Share a subject prefix with services started earlier (one mesh). */
  readonly prefix?: string;
  readonly env?: Record<string, string>;
}

/** Runs one SQL statement as the superuser on the test database. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
  const url = new URL(adminUrl);
  url.pathname = `/${testDatabase}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Migrates and starts `module` in isolation; see the module comment.
 * Identity keeps its secrets encrypted through the keys service, as in a
 * deployment: unless `env` names a KEYS_URL, a keys service is started
 * beside it on the same subject prefix and stopped with it.
 */
export async function startTestService(module: ServiceModule, opts: StartOptions = {}): Promise<Started> {
  if (module.name === "identity" && opts.env?.["KEYS_URL"] === undefined) {
    const prefix = opts.reuse?.prefix ?? opts.prefix ?? `t${nuid.next().toLowerCase()}`;
    const { keysModule } = await import("@bulwark/keys");
    const keys = await startTestService(keysModule, { prefix, env: { ...(opts.env?.["TENANCY_URL"] !== undefined ? { TENANCY_URL: opts.env["TENANCY_URL"] } : {}) } });
    const started = await startTestService(module, { ...opts, prefix, env: { ...opts.env, KEYS_URL: keys.baseUrl } }).catch(async (err: unknown) => {
      await keys.stop();
      throw err;
    });
    return {
      ...started,
      async stop() {
        await started.stop();
        await keys.stop();
      },
    };
  }
  const id = nuid.next().toLowerCase();
  const schema = opts.reuse?.schema ?? `t_${module.name}_${id}`;
  const prefix = opts.reuse?.prefix ?? opts.prefix ?? `t${id}`;
  const app = new URL(adminUrl);
  app.username = `${schema}_app`;
  app.pathname = `/${testDatabase}`;
  const admin = new URL(adminUrl);
  admin.pathname = `/${testDatabase}`;
  const config = loadConfig(module.name, {
    NODE_ENV: "test",
    PORT: "0",
    DATABASE_URL: app.toString(),
    DATABASE_ADMIN_URL: admin.toString(),
    DATABASE_SCHEMA: schema,
    DATABASE_POOL_MAX: "4",
    NATS_URL: natsUrl,
    EVENTS_SUBJECT_PREFIX: prefix,
    BULWARK_BOOTSTRAP_TOKEN: bootstrapToken,
    BULWARK_SERVICE_SECRET: serviceSecret,
    // Tests create operators and keep using the bootstrap token; the
    // retirement itself is tested on its own (e2e/bootstrap-retirement).
    BULWARK_BOOTSTRAP_RETIRES: "false",
    LOG_LEVEL: process.env["BULWARK_TEST_LOG_LEVEL"] ?? "silent",
    SHUTDOWN_GRACE_MS: "2000",
    // The tests' clients play a proxy on 127.0.0.1 that forwards for many
    // client addresses (X-Forwarded-For), so each test can count sign-in
    // failures under addresses of its own; tests of the peer address itself
    // bind other loopback addresses (127.0.0.2, …), which are not trusted.
    TRUSTED_PROXIES: "127.0.0.1/32,::1/128",
    ...opts.env,
  });
  await migrateService(module, config);
  // Provisioning, as an operator would: the tenant-status bucket is tenancy's to create, and
  // the other services wait for it (fail closed); a service tested without tenancy finds it here.
  if (module.name !== "tenancy") await ensureTenantStatusBucket(prefix);
  const tokens = new StaticTokenResolver([]);
  const running = await startService({ ...module, resolvers: (deps) => [...(module.resolvers?.(deps) ?? []), tokens] }, config);
  let counter = 0;
  return {
    running,
    config,
    prefix,
    baseUrl: `http://127.0.0.1:${running.port}`,
    issueToken(principal) {
      const token = `test-${id}-${++counter}`;
      tokens.add(token, principal);
      return token;
    },
    async stop() {
      await running.stop();
      if (opts.keep === true) return;
      await dropTestService(schema, prefix, module.name);
    },
  };
}

/** Creates the tenant-status bucket of a subject prefix if it does not exist yet. */
async function ensureTenantStatusBucket(prefix: string): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    await openTenantStatusBucket(nc, prefix);
  } finally {
    await nc.close();
  }
}

/** Removes a test service's schema, roles, stream and KV bucket. */
export async function dropTestService(schema: string, prefix: string, service: string): Promise<void> {
  // Under the provisioner's lock: dropping a role rewrites the database's ACL, which a
  // concurrent provisioning's GRANT CONNECT also rewrites ("tuple concurrently updated").
  const roles = [`${schema}_app`, `${schema}_app_owner`];
  await adminQuery(`do $$ begin
    perform pg_advisory_xact_lock(hashtext('bulwark.provision'));
    execute 'drop schema if exists "${schema}" cascade';
    ${roles.map((r) => `if exists (select 1 from pg_roles where rolname = '${r}') then execute 'drop owned by "${r}" cascade'; execute 'drop role "${r}"'; end if;`).join("\n")}
  end $$`).catch(() => undefined);
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(streamOf(prefix, service).name).catch(() => undefined);
    await jsm.streams.delete(`KV_${prefix}_tenant_status`).catch(() => undefined);
    if (service === "keys") await jsm.streams.delete(`KV_${prefix}_keys_usage`).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

/** The three protocols every server speaks. */
export type Protocol = "grpc" | "connect" | "grpcweb";

/** A transport to a started service, optionally with a bearer token. */
export function transport(baseUrl: string, protocol: Protocol = "grpc", headers: Record<string, string> = {}): Transport {
  const interceptors = [
    (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) => async (req: Parameters<Parameters<import("@connectrpc/connect").Interceptor>[0]>[0]) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    },
  ];
  if (protocol === "connect") return createConnectTransport({ baseUrl, httpVersion: "2", interceptors });
  if (protocol === "grpcweb") return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors });
  return createGrpcTransport({ baseUrl, interceptors });
}

/** A typed client with a bearer token. */
export function clientFor<S extends DescService>(service: S, baseUrl: string, token?: string, protocol: Protocol = "grpc", extra: Record<string, string> = {}): Client<S> {
  return createClient(service, transport(baseUrl, protocol, { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...extra }));
}

/** Polls `fn` until it returns true or `timeoutMs` passes. */
export async function eventually(fn: () => Promise<boolean> | boolean, timeoutMs = 5000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A unique slug for a test tenant. */
export function uniqueSlug(label = "t"): string {
  return `${label}-${nuid.next().toLowerCase().slice(-12)}`;
}

/** Tenancy and identity started as one mesh: a shared subject prefix, each knowing where the other answers. */
export interface TestMesh {
  readonly prefix: string;
  readonly tenancy: Started;
  readonly identity: Started;
  stop(): Promise<void>;
}

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts tenancy and identity wired to each other as in a deployment (each
 * verifies identity's tokens and follows its revocations), with `env` added
 * to both.
 */
export async function startMesh(modules: { tenancy: ServiceModule; identity: ServiceModule }, env: Record<string, string> = {}): Promise<TestMesh> {
  const prefix = `t${nuid.next().toLowerCase()}`;
  const [tenancyPort, identityPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const urls = { TENANCY_URL: `http://127.0.0.1:${tenancyPort}`, IDENTITY_URL: `http://127.0.0.1:${identityPort}`, ...env };
  const tenancy = await startTestService(modules.tenancy, { prefix, env: { ...urls, PORT: String(tenancyPort) } });
  const identity = await startTestService(modules.identity, { prefix, env: { ...urls, PORT: String(identityPort) } }).catch(async (err: unknown) => {
    await tenancy.stop();
    throw err;
  });
  return {
    prefix,
    tenancy,
    identity,
    async stop() {
      await identity.stop();
      await tenancy.stop();
    },
  };
}

/**
 * A typed client whose connection leaves from `localAddress` (any of
 * 127.0.0.0/8 works on Linux), so the server sees that peer address — a
 * direct client, no proxy and no forwarding header unless `headers` adds one.
 */
export function clientFrom<S extends DescService>(service: S, baseUrl: string, localAddress: string, protocol: Protocol = "grpc", headers: Record<string, string> = {}): Client<S> {
  const interceptors = [
    (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) => async (req: Parameters<Parameters<import("@connectrpc/connect").Interceptor>[0]>[0]) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    },
  ];
  const createConnection = (authority: URL) => netConnect({ host: authority.hostname, port: Number(authority.port), localAddress });
  if (protocol === "connect") return createClient(service, createConnectTransport({ baseUrl, httpVersion: "2", interceptors, nodeOptions: { createConnection } }));
  if (protocol === "grpcweb") return createClient(service, createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors, nodeOptions: { localAddress } }));
  return createClient(service, createGrpcTransport({ baseUrl, interceptors, nodeOptions: { createConnection } }));
}
