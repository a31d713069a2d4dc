import { create, toBinary } from "@bufbuild/protobuf";
import { GetTenantRequestSchema, Region, TenancyService } from "@bulwark/contracts";
import { loadConfig, type ServiceConfig } from "@bulwark/core";
import { migrateService, startService, streamOf, type RunningService } from "@bulwark/server";
import { tenancyModule } from "@bulwark/tenancy";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import pg from "pg";

/** A tenancy service started for benchmarks in a throwaway schema. */
export interface BenchMesh {
  readonly address: string;
  readonly token: string;
  /** A serialized GetTenantRequest for an existing tenant. */
  readonly getTenantRequest: string;
  close(): Promise<void>;
}

const adminUrl = process.env["BULWARK_BENCH_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/bulwark_bench";

/** Starts tenancy (real Postgres and NATS) and creates one tenant to read. */
export async function startBenchMesh(env: Record<string, string> = {}): Promise<BenchMesh> {
  const suffix = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  const schema = `bench_${suffix}`;
  const prefix = `bench${suffix}`;
  const app = new URL(adminUrl);
  app.username = `${schema}_app`;
  const token = "bench-bootstrap-token-0123456789abcdef";
  const config: ServiceConfig = loadConfig("tenancy", {
    PORT: "0",
    DATABASE_URL: app.toString(),
    DATABASE_ADMIN_URL: adminUrl,
    DATABASE_SCHEMA: schema,
    EVENTS_SUBJECT_PREFIX: prefix,
    BULWARK_BOOTSTRAP_TOKEN: token,
    LOG_LEVEL: "silent",
    DATABASE_POOL_MAX: "10",
    ...env,
  });
  await migrateService(tenancyModule, config);
  const running: RunningService = await startService(tenancyModule, config);
  const address = `127.0.0.1:${running.port}`;
  const client = createClient(TenancyService, createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] }));
  const { tenant } = await client.createTenant({ slug: `bench-${suffix}`, displayName: "Bench", region: Region.EU });
  const getTenantRequest = Buffer.from(toBinary(GetTenantRequestSchema, create(GetTenantRequestSchema, { tenantId: tenant!.id }))).toString("base64");
  return {
    address,
    token,
    getTenantRequest,
    async close() {
      await running.stop();
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`drop schema if exists "${schema}" cascade`);
      for (const role of [`${schema}_app`, `${schema}_app_owner`]) {
        await admin.query(`drop owned by "${role}" cascade`).catch(() => undefined);
        await admin.query(`drop role if exists "${role}"`);
      }
      await admin.end();
      const { connect } = await import("@nats-io/transport-node");
      const nc = await connect({ servers: config.NATS_URL });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(streamOf(prefix, "tenancy").name).catch(() => undefined);
      await jsm.streams.delete(`KV_${prefix}_tenant_status`).catch(() => undefined);
      await nc.close();
    },
  };
}
