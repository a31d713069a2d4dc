/**
 * The whole mesh as it is deployed, for the scale-out and fault suites:
 * every service that exists (its built entry point is there) migrated by
 * its own `migrate.js` (the chart's migration Job) and started from its
 * built `main.js`, in R replicas, each a process of its own, in production
 * mode (each service its own signing key, the public keys listed, a master
 * keyring), with every `*_URL` the list of that service's replicas.
 *
 * A service joins by data: `meshServices` lists the five in start order and
 * the ones not built yet are left out, so audit and compliance take part as
 * soon as they land.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { health } from "@bulwark/contracts";
import { privateKeyFromSeed, rawPublicKey } from "@bulwark/core";
import { nuid } from "@nats-io/nuid";
import pg from "pg";
import { freePort } from "./ports.js";

/** Every service of the mesh, in start order (keys before identity: identity keeps its secrets through keys). */
export const meshServices = ["tenancy", "keys", "identity", "audit", "compliance"] as const;
/** A service name. */
export type MeshService = (typeof meshServices)[number];

/** The environment variable naming where a service answers. */
export const urlVariable = (s: MeshService): string => `${s.toUpperCase()}_URL`;

const root = fileURLToPath(new URL("../../../", import.meta.url));
const entry = (s: MeshService, file: "main" | "migrate"): string => `${root}services/${s}/dist/src/${file}.js`;

/** The services whose built entry points exist, in start order. */
export function builtServices(): MeshService[] {
  return meshServices.filter((s) => existsSync(entry(s, "main")) && existsSync(entry(s, "migrate")));
}

/** The bootstrap credential of a process mesh. */
export const meshBootstrapToken = "scale-bootstrap-token-0123456789abcdef";

/** One replica: a process on a fixed port (kept across restarts). */
export interface Replica {
  readonly service: MeshService;
  readonly index: number;
  readonly port: number;
  readonly url: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** The last lines the process wrote. */
  output(): string;
}

/** How to start a process mesh. */
export interface ProcessMeshOptions {
  /** Replicas per service. */
  readonly replicas: number;
  /** NATS_URL of every service (a list for a cluster). */
  readonly natsUrl: string;
  /** NATS_REPLICAS (3 on a 3-node cluster). */
  readonly natsReplicas?: number;
  /** The superuser URL of the database the schemas go into. */
  readonly adminUrl: string;
  /** Only these services (default: every built one). */
  readonly services?: readonly MeshService[];
  /** Added to every process's environment. */
  readonly env?: Record<string, string>;
  /** Added to one service's environment. */
  readonly serviceEnv?: Partial<Record<MeshService, Record<string, string>>>;
}

interface ReplicaState {
  service: MeshService;
  index: number;
  port: number;
  proc: ChildProcess | undefined;
  out: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Services started as processes; see the module comment. */
export class ProcessMesh {
  readonly prefix: string;
  readonly services: readonly MeshService[];
  readonly #opts: ProcessMeshOptions;
  readonly #replicas: ReplicaState[] = [];
  readonly #suffix: string;
  readonly #secrets: Record<string, string>;
  readonly #seeds: Record<string, Buffer>;

  private constructor(opts: ProcessMeshOptions) {
    this.#opts = opts;
    this.#suffix = nuid.next().toLowerCase().slice(-10);
    this.prefix = `scale${this.#suffix}`;
    this.services = (opts.services ?? builtServices()).filter((s) => builtServices().includes(s));
    this.#seeds = Object.fromEntries(meshServices.map((s) => [s, randomBytes(32)]));
    this.#secrets = {
      BULWARK_SERVICE_PUBLIC_KEYS: meshServices.map((s) => `${s}=${rawPublicKey(privateKeyFromSeed(this.#seeds[s]!))}`).join(","),
      BULWARK_MASTER_KEYS: `scale:${randomBytes(32).toString("base64")}`,
      KEYS_API_KEY_PEPPER: randomBytes(32).toString("base64url"),
      BULWARK_SERVICE_SECRET: randomBytes(32).toString("base64url"),
      BULWARK_BOOTSTRAP_TOKEN: meshBootstrapToken,
    };
  }

  /** Migrates and starts every service, replica by replica, each until its health says SERVING. */
  static async start(opts: ProcessMeshOptions): Promise<ProcessMesh> {
    const mesh = new ProcessMesh(opts);
    for (const service of mesh.services) for (let i = 0; i < opts.replicas; i++) mesh.#replicas.push({ service, index: i, port: await freePort(), proc: undefined, out: "" });
    try {
      for (const service of mesh.services) {
        await mesh.#migrate(service);
        for (const r of mesh.#replicas.filter((x) => x.service === service)) await mesh.#startReplica(r);
      }
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    return mesh;
  }

  /** BULWARK_SERVICE_PUBLIC_KEYS of the mesh (public). */
  get publicKeys(): string {
    return this.#secrets["BULWARK_SERVICE_PUBLIC_KEYS"]!;
  }

  /** The schema of a service. */
  schemaOf(service: MeshService): string {
    return `scale_${service}_${this.#suffix}`;
  }

  /** Where a service's replicas answer, comma-separated (its `*_URL`). */
  urls(service: MeshService): string {
    return this.replicas(service).map((r) => r.url).join(",");
  }

  /** The replicas of a service. */
  replicas(service: MeshService): Replica[] {
    return this.#replicas.filter((r) => r.service === service).map((r) => this.#view(r));
  }

  #view(r: ReplicaState): Replica {
    return { service: r.service, index: r.index, port: r.port, url: `http://127.0.0.1:${r.port}`, running: r.proc !== undefined, pid: r.proc?.pid, output: () => r.out };
  }

  #env(service: MeshService, port: number): Record<string, string> {
    const admin = new URL(this.#opts.adminUrl);
    const app = new URL(this.#opts.adminUrl);
    app.username = `${this.schemaOf(service)}_app`;
    app.password = "";
    const { PATH, HOME } = process.env;
    return {
      ...(PATH !== undefined ? { PATH } : {}),
      ...(HOME !== undefined ? { HOME } : {}),
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_URL: app.toString(),
      DATABASE_ADMIN_URL: admin.toString(),
      DATABASE_SCHEMA: this.schemaOf(service),
      DATABASE_POOL_MAX: "4",
      NATS_URL: this.#opts.natsUrl,
      NATS_REPLICAS: String(this.#opts.natsReplicas ?? 1),
      EVENTS_SUBJECT_PREFIX: this.prefix,
      BULWARK_SERVICE_KEY: this.#seeds[service]!.toString("base64url"),
      BULWARK_BOOTSTRAP_RETIRES: "false",
      PUBLIC_RATE_LIMIT_PER_MINUTE: "0",
      SHUTDOWN_GRACE_MS: "2000",
      LOG_LEVEL: "warn",
      ...this.#secrets,
      ...Object.fromEntries(meshServices.map((s) => [urlVariable(s), this.#replicas.filter((r) => r.service === s).map((r) => `http://127.0.0.1:${r.port}`).join(",") || `http://127.0.0.1:1`])),
      ...this.#opts.env,
      ...this.#opts.serviceEnv?.[service],
    };
  }

  async #migrate(service: MeshService): Promise<void> {
    const proc = spawn(process.execPath, [entry(service, "migrate")], { env: this.#env(service, 0), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
    const code = await new Promise<number | null>((r) => proc.once("exit", r));
    if (code !== 0) throw new Error(`migrating ${service} failed (${code}):\n${out.slice(-4000)}`);
  }

  async #startReplica(r: ReplicaState): Promise<void> {
    const proc = spawn(process.execPath, [entry(r.service, "main")], { env: this.#env(r.service, r.port), stdio: ["ignore", "pipe", "pipe"] });
    const keep = (d: string): void => void (r.out = (r.out + d).slice(-20_000));
    proc.stdout!.setEncoding("utf8").on("data", keep);
    proc.stderr!.setEncoding("utf8").on("data", keep);
    proc.once("exit", () => {
      if (r.proc === proc) r.proc = undefined;
    });
    r.proc = proc;
    await this.waitServing(r.service, r.index);
  }

  /** Waits until replica `index` of `service` reports SERVING (overall health); returns how long it took. */
  async waitServing(service: MeshService, index: number, timeoutMs = 60_000): Promise<number> {
    const r = this.#replicas.find((x) => x.service === service && x.index === index)!;
    const client = createClient(health.Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${r.port}` }));
    const started = Date.now();
    for (;;) {
      if (r.proc === undefined) throw new Error(`${service}#${index} exited during start-up:\n${r.out.slice(-4000)}`);
      try {
        const res = await client.check({ service: "" }, { timeoutMs: 1000 });
        if (res.status === health.HealthCheckResponse_ServingStatus.SERVING) return Date.now() - started;
      } catch {
        // not listening yet
      }
      if (Date.now() - started > timeoutMs) throw new Error(`${service}#${index} not SERVING within ${timeoutMs} ms:\n${r.out.slice(-4000)}`);
      await sleep(100);
    }
  }

  /** SIGKILLs a replica (no drain, no goodbye) and waits for it to exit. */
  async kill(service: MeshService, index: number): Promise<void> {
    const r = this.#replicas.find((x) => x.service === service && x.index === index)!;
    const proc = r.proc;
    if (proc === undefined) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await exited;
  }

  /** Starts a killed replica again on its port; resolves with the milliseconds until it was SERVING. */
  async restart(service: MeshService, index: number): Promise<number> {
    const r = this.#replicas.find((x) => x.service === service && x.index === index)!;
    if (r.proc !== undefined) return 0;
    const started = Date.now();
    await this.#startReplica(r);
    return Date.now() - started;
  }

  /** Stops every replica (SIGTERM, then SIGKILL after 10 s) and drops the schemas and roles. */
  async stop(opts: { keepSchemas?: boolean } = {}): Promise<void> {
    await Promise.all(
      this.#replicas.map(async (r) => {
        const proc = r.proc;
        if (proc === undefined) return;
        const exited = new Promise((resolve) => proc.once("exit", resolve));
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    if (opts.keepSchemas === true) return;
    const admin = new pg.Client({ connectionString: this.#opts.adminUrl });
    await admin.connect().catch(() => undefined);
    try {
      for (const service of this.services) {
        const schema = this.schemaOf(service);
        const roles = [`${schema}_app`, `${schema}_app_owner`];
        await admin
          .query(
            `do $$ begin
              perform pg_advisory_xact_lock(hashtext('bulwark.provision'));
              execute 'drop schema if exists "${schema}" cascade';
              ${roles.map((role) => `if exists (select 1 from pg_roles where rolname = '${role}') then execute 'drop owned by "${role}" cascade'; execute 'drop role "${role}"'; end if;`).join("\n")}
            end $$`,
          )
          .catch(() => undefined);
      }
    } finally {
      await admin.end().catch(() => undefined);
    }
  }
}
