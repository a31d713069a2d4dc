import { create, toBinary } from "@bufbuild/protobuf";
import { DiagnosticsService, GetTenantRequestSchema, Region, TenancyService } from "@bulwark/contracts";
import { loadConfig, privateKeyFromSeed, rawPublicKey, type ServiceName } from "@bulwark/core";
import { migrateService, streamOf, type ServiceModule } from "@bulwark/server";
import { tenancyModule } from "@bulwark/tenancy";
import { identityModule } from "@bulwark/identity";
import { keysModule } from "@bulwark/keys";
import { complianceModule } from "@bulwark/compliance";
import { auditModule } from "@bulwark/audit";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import pg from "pg";

/** The mesh started for benchmarks, in throwaway schemas. */
export interface BenchMesh {
  /** tenancy's host:port. */
  readonly address: string;
  /** identity's host:port, when started. */
  readonly identityAddress: string;
  /** compliance's host:port, when started. */
  readonly complianceAddress: string;
  readonly token: string;
  readonly tenantId: string;
  readonly tenantSlug: string;
  /** The subject prefix the mesh's events use. */
  readonly prefix: string;
  /** Where tenancy answers. */
  readonly tenancyUrl: string;
  /** A serialized GetTenantRequest for the tenant. */
  readonly getTenantRequest: string;
  /** The service processes by name, for CPU accounting. */
  readonly pids: Readonly<Record<string, number>>;
  /** Each started service's schema, by service. */
  readonly schemas: Readonly<Record<string, string>>;
  /** The services' Postgres login roles (their backends are found by them). */
  readonly roles: readonly string[];
  /** Where each service listens (identity and keys only when started). */
  readonly ports: Readonly<Record<"tenancy" | "identity" | "keys", number>>;
  /** The schema a service of this mesh runs in. */
  schemaOf(service: ServiceName): string;
  /** The pepper keys hashes API-key secrets with (a bench may write keys the way keys does). */
  readonly apiKeyPepper: string;
  /** audit's host:port and schema, when started (`audit: true`). */
  readonly auditAddress?: string;
  readonly auditSchema?: string;
  close(): Promise<void>;
}

export const adminUrl = process.env["BULWARK_BENCH_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/bulwark_bench";
export const benchBootstrapToken = "bench-bootstrap-token-0123456789abcdef";
const benchServiceSecret = "bench-service-secret-0123456789abcdef-0123";
/** BENCH_CPU_PROF=<dir>: each service process writes a V8 CPU profile there on exit. */
const cpuProfDir = process.env["BENCH_CPU_PROF"];
/** BENCH_NODE_ARGS: further node flags for the service processes (e.g. --perf-basic-prof for `perf`). */
const nodeArgs = (process.env["BENCH_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== "");

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** The built entry point of a service, as `npm start` and the container run it. */
function mainOf(service: ServiceName): string {
  return fileURLToPath(new URL(`../../services/${service}/dist/src/main.js`, import.meta.url));
}

/** Waits until a started service answers a Ping (its server listens once it is ready). */
async function ready(name: string, child: ChildProcess, port: number): Promise<void> {
  const client = createClient(DiagnosticsService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} during start-up`);
    try {
      await client.ping({ payload: new Uint8Array(1) }, { timeoutMs: 1000 });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${name} did not answer within 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts tenancy (and identity, if asked) as the deployment runs them: each
 * service migrated, then started from its built `main.js` in a process of
 * its own with its configuration in the environment, against the real
 * Postgres and NATS with a shared subject prefix. Creates one tenant to read.
 */
export async function startBenchMesh(opts: { identity?: boolean; compliance?: boolean; audit?: boolean; env?: Record<string, string> } = {}): Promise<BenchMesh> {
  const suffix = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  const prefix = `bench${suffix}`;
  const [tenancyPort, identityPort, keysPort, compliancePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const started: { child: ChildProcess; schema: string; service: string }[] = [];
  const schemaOf = (module: ServiceModule): string => `bench_${module.name}_${suffix}`;
  // Production mode, as deployed: each service its own signing key, every public key listed, a master key for keys.
  const seeds = Object.fromEntries(["tenancy", "identity", "keys", "compliance", "audit"].map((name) => [name, randomBytes(32)]));
  const auditPort = opts.audit === true ? await freePort() : 0;
  const publicKeys = Object.entries(seeds).map(([name, seed]) => `${name}=${rawPublicKey(privateKeyFromSeed(seed))}`).join(",");
  const masterKeys = `bench:${randomBytes(32).toString("base64")}`;
  const apiKeyPepper = randomBytes(32).toString("base64url");
  const start = async (module: ServiceModule, port: number): Promise<void> => {
    const schema = schemaOf(module);
    const app = new URL(adminUrl);
    app.username = `${schema}_app`;
    const env: Record<string, string> = {
      PORT: String(port),
      DATABASE_URL: app.toString(),
      DATABASE_ADMIN_URL: adminUrl,
      DATABASE_SCHEMA: schema,
      EVENTS_SUBJECT_PREFIX: prefix,
      BULWARK_BOOTSTRAP_TOKEN: benchBootstrapToken,
      BULWARK_SERVICE_SECRET: benchServiceSecret,
      BULWARK_SERVICE_KEY: seeds[module.name]!.toString("base64url"),
      BULWARK_SERVICE_PUBLIC_KEYS: publicKeys,
      BULWARK_MASTER_KEYS: masterKeys,
      KEYS_API_KEY_PEPPER: apiKeyPepper,
      BULWARK_BOOTSTRAP_RETIRES: "false",
      // BENCH_LOG_LEVEL=warn (say) shows the services' logs on stderr.
      LOG_LEVEL: process.env["BENCH_LOG_LEVEL"] ?? "silent",
      DATABASE_POOL_MAX: "10",
      TENANCY_URL: `http://127.0.0.1:${tenancyPort}`,
      IDENTITY_URL: `http://127.0.0.1:${identityPort}`,
      KEYS_URL: `http://127.0.0.1:${keysPort}`,
      COMPLIANCE_URL: `http://127.0.0.1:${compliancePort}`,
      ...(opts.audit === true ? { AUDIT_URL: `http://127.0.0.1:${auditPort}` } : {}),
      // One client address drives every row: the public-method limiter stays
      // on (its cost is part of the figures) with a limit no row reaches.
      PUBLIC_RATE_LIMIT_PER_MINUTE: "1000000000",
      ...opts.env,
    };
    // The migration Job's work, done here before the process starts.
    await migrateService(module, loadConfig(module.name, env));
    const args = [...nodeArgs, ...(cpuProfDir !== undefined ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir, "--cpu-prof-name", `${module.name}-${suffix}.cpuprofile`] : []), mainOf(module.name)];
    const { PATH, HOME, UV_THREADPOOL_SIZE } = process.env;
    const child = spawn(process.execPath, args, { stdio: ["ignore", process.env["BENCH_LOG_LEVEL"] === undefined ? "ignore" : "inherit", "inherit"], env: { PATH, HOME, ...(UV_THREADPOOL_SIZE !== undefined ? { UV_THREADPOOL_SIZE } : {}), NODE_ENV: "production", ...env } });
    started.push({ child, schema, service: module.name });
    await ready(module.name, child, port);
  };
  try {
    await start(tenancyModule, tenancyPort);
    // Identity keeps its secrets encrypted through keys, so keys comes with it.
    if (opts.identity === true) await start(keysModule, keysPort);
    if (opts.identity === true) await start(identityModule, identityPort);
    // Audit records tenancy's (and keys') streams and keeps its checkpoint key through keys.
    if (opts.audit === true && opts.identity !== true) await start(keysModule, keysPort);
    if (opts.audit === true) await start(auditModule, auditPort);
    if (opts.compliance === true) await start(complianceModule, compliancePort);
  } catch (err) {
    for (const s of started) await stopChild(s.child);
    throw err;
  }
  const address = `127.0.0.1:${tenancyPort}`;
  const client = createClient(TenancyService, createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${benchBootstrapToken}`), next(req))] }));
  const tenantSlug = `bench-${suffix}`;
  const { tenant } = await client.createTenant({ slug: tenantSlug, displayName: "Bench", region: Region.EU });
  const getTenantRequest = Buffer.from(toBinary(GetTenantRequestSchema, create(GetTenantRequestSchema, { tenantId: tenant!.id }))).toString("base64");
  return {
    address,
    identityAddress: `127.0.0.1:${identityPort}`,
    complianceAddress: `127.0.0.1:${compliancePort}`,
    schemas: Object.fromEntries(started.map((s) => [s.service, s.schema])),
    token: benchBootstrapToken,
    tenantId: tenant!.id,
    tenantSlug,
    prefix,
    tenancyUrl: `http://127.0.0.1:${tenancyPort}`,
    getTenantRequest,
    pids: Object.fromEntries(started.map((s) => [s.service, s.child.pid ?? 0])),
    roles: started.map((s) => `${s.schema}_app`),
    ports: { tenancy: tenancyPort, identity: identityPort, keys: keysPort },
    schemaOf: (service) => `bench_${service}_${suffix}`,
    apiKeyPepper,
    ...(opts.audit === true ? { auditAddress: `127.0.0.1:${auditPort}`, auditSchema: schemaOf(auditModule) } : {}),
    async close() {
      for (const s of [...started].reverse()) await stopChild(s.child);
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      for (const { schema } of started) {
        await admin.query(`drop schema if exists "${schema}" cascade`);
        for (const role of [`${schema}_app`, `${schema}_app_owner`, `${schema}_app_retention`]) {
          await admin.query(`drop owned by "${role}" cascade`).catch(() => undefined);
          await admin.query(`drop role if exists "${role}"`);
        }
      }
      await admin.end();
      const nc = await connect({ servers: "nats://127.0.0.1:4222" });
      const jsm = await jetstreamManager(nc);
      for (const { service } of started) await jsm.streams.delete(streamOf(prefix, service).name).catch(() => undefined);
      for (const kv of ["tenant_status", "keys_usage"]) await jsm.streams.delete(`KV_${prefix}_${kv}`).catch(() => undefined);
      await nc.close();
    },
  };
}
