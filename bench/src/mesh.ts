import { create, toBinary } from "@bufbuild/protobuf";
import { GetTenantRequestSchema, Region, TenancyService } from "@bulwark/contracts";
import { loadConfig, type ServiceConfig } from "@bulwark/core";
import { migrateService, startService, streamOf, type RunningService, type ServiceModule } from "@bulwark/server";
import { tenancyModule } from "@bulwark/tenancy";
import { identityModule } from "@bulwark/identity";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { createServer, type AddressInfo } from "node:net";
import pg from "pg";

/** The mesh started for benchmarks, in throwaway schemas. */
export interface BenchMesh {
  /** tenancy's host:port. */
  readonly address: string;
  /** identity's host:port, when started. */
  readonly identityAddress: string;
  readonly token: string;
  readonly tenantId: string;
  readonly tenantSlug: string;
  /** A serialized GetTenantRequest for the tenant. */
  readonly getTenantRequest: string;
  close(): Promise<void>;
}

const adminUrl = process.env["BULWARK_BENCH_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/bulwark_bench";
export const benchBootstrapToken = "bench-bootstrap-token-0123456789abcdef";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts tenancy (and identity, if asked) against the real Postgres and
 * NATS with a shared subject prefix, and creates one tenant to read.
 */
export async function startBenchMesh(opts: { identity?: boolean; env?: Record<string, string> } = {}): Promise<BenchMesh> {
  const suffix = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  const prefix = `bench${suffix}`;
  const [tenancyPort, identityPort] = [await freePort(), await freePort()];
  const started: { running: RunningService; schema: string; service: string }[] = [];
  const start = async (module: ServiceModule, port: number): Promise<RunningService> => {
    const schema = `bench_${module.name}_${suffix}`;
    const app = new URL(adminUrl);
    app.username = `${schema}_app`;
    const config: ServiceConfig = loadConfig(module.name, {
      PORT: String(port),
      DATABASE_URL: app.toString(),
      DATABASE_ADMIN_URL: adminUrl,
      DATABASE_SCHEMA: schema,
      EVENTS_SUBJECT_PREFIX: prefix,
      BULWARK_BOOTSTRAP_TOKEN: benchBootstrapToken,
      BULWARK_BOOTSTRAP_RETIRES: "false",
      LOG_LEVEL: "silent",
      DATABASE_POOL_MAX: "10",
      TENANCY_URL: `http://127.0.0.1:${tenancyPort}`,
      IDENTITY_URL: `http://127.0.0.1:${identityPort}`,
      // One client address drives every row: the public-method limiter stays
      // on (its cost is part of the figures) with a limit no row reaches.
      PUBLIC_RATE_LIMIT_PER_MINUTE: "1000000000",
      ...opts.env,
    });
    await migrateService(module, config);
    const running = await startService(module, config);
    started.push({ running, schema, service: module.name });
    return running;
  };
  await start(tenancyModule, tenancyPort);
  if (opts.identity === true) await start(identityModule, identityPort);
  const address = `127.0.0.1:${tenancyPort}`;
  const client = createClient(TenancyService, createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${benchBootstrapToken}`), next(req))] }));
  const tenantSlug = `bench-${suffix}`;
  const { tenant } = await client.createTenant({ slug: tenantSlug, displayName: "Bench", region: Region.EU });
  const getTenantRequest = Buffer.from(toBinary(GetTenantRequestSchema, create(GetTenantRequestSchema, { tenantId: tenant!.id }))).toString("base64");
  return {
    address,
    identityAddress: `127.0.0.1:${identityPort}`,
    token: benchBootstrapToken,
    tenantId: tenant!.id,
    tenantSlug,
    getTenantRequest,
    async close() {
      for (const s of [...started].reverse()) await s.running.stop();
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      for (const { schema } of started) {
        await admin.query(`drop schema if exists "${schema}" cascade`);
        for (const role of [`${schema}_app`, `${schema}_app_owner`]) {
          await admin.query(`drop owned by "${role}" cascade`).catch(() => undefined);
          await admin.query(`drop role if exists "${role}"`);
        }
      }
      await admin.end();
      const nc = await connect({ servers: "nats://127.0.0.1:4222" });
      const jsm = await jetstreamManager(nc);
      for (const { service } of started) await jsm.streams.delete(streamOf(prefix, service).name).catch(() => undefined);
      await jsm.streams.delete(`KV_${prefix}_tenant_status`).catch(() => undefined);
      await nc.close();
    },
  };
}
