/**
 * Private NATS servers for the scale-out and fault suites: a JetStream
 * cluster of N nodes on loopback (or one server), each node its own
 * `nats-server` process with its own store, on ports nobody else uses, so a
 * node can be SIGKILLed and restarted without disturbing the shared NATS on
 * 4222 that the other tests use.
 *
 * The binary: `NATS_SERVER_BIN`, else `nats-server` in `$(go env GOPATH)/bin`,
 * else installed there with `go install github.com/nats-io/nats-server/v2@v2.15.2`
 * (multi-subject consumers and R3 streams want a recent server; Debian's is 2.9).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { freePort } from "./ports.js";

/** The nats-server version the suites need and install. */
export const natsServerVersion = "v2.15.2";

function goBinary(): string | undefined {
  for (const candidate of [process.env["GO"], "/usr/local/go/bin/go", "go"]) {
    if (candidate === undefined) continue;
    const r = spawnSync(candidate, ["version"], { encoding: "utf8" });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

/** The path of a nats-server recent enough, installing it with `go install` when missing. */
export function natsServerBinary(): string {
  const fromEnv = process.env["NATS_SERVER_BIN"];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  const go = goBinary();
  if (go === undefined) throw new Error("nats-server v2.15 is needed: set NATS_SERVER_BIN, or install Go (go install github.com/nats-io/nats-server/v2@" + natsServerVersion + ")");
  const gobin = spawnSync(go, ["env", "GOBIN"], { encoding: "utf8" }).stdout.trim() || join(spawnSync(go, ["env", "GOPATH"], { encoding: "utf8" }).stdout.trim(), "bin");
  const bin = join(gobin, "nats-server");
  const version = existsSync(bin) ? spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout : "";
  if (!version.includes(natsServerVersion)) {
    const r = spawnSync(go, ["install", `github.com/nats-io/nats-server/v2@${natsServerVersion}`], { stdio: "inherit" });
    if (r.status !== 0) throw new Error(`go install nats-server ${natsServerVersion} failed`);
  }
  return bin;
}

/** One node of a private NATS deployment. */
export interface NatsNode {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** True while its process runs. */
  readonly running: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * N nats-server processes forming one JetStream cluster (N ≥ 3), or a single
 * JetStream server (N = 1). Nodes keep their store across restarts.
 */
export class NatsCluster {
  readonly #dir: string;
  readonly #bin: string;
  readonly #nodes: { name: string; port: number; clusterPort: number; conf: string; proc: ChildProcess | undefined; log: string }[] = [];

  private constructor(dir: string, bin: string) {
    this.#dir = dir;
    this.#bin = bin;
  }

  /** Starts `nodes` servers and waits until JetStream answers (with a meta leader when clustered). */
  static async start(nodes: number): Promise<NatsCluster> {
    const cluster = new NatsCluster(mkdtempSync(join(tmpdir(), "bulwark-nats-")), natsServerBinary());
    const ports = [];
    for (let i = 0; i < nodes; i++) ports.push({ port: await freePort(), clusterPort: await freePort() });
    const routes = ports.map((p) => `nats-route://127.0.0.1:${p.clusterPort}`);
    for (let i = 0; i < nodes; i++) {
      const name = `n${i + 1}`;
      const store = join(cluster.#dir, name);
      mkdirSync(store, { recursive: true });
      const conf = join(cluster.#dir, `${name}.conf`);
      const lines = [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${ports[i]!.port}`,
        `jetstream { store_dir: "${store}", max_memory_store: 64MB, max_file_store: 1GB }`,
        ...(nodes > 1 ? [`cluster { name: bulwark_scale, listen: 127.0.0.1:${ports[i]!.clusterPort}, routes: [${routes.join(", ")}] }`] : []),
      ];
      writeFileSync(conf, lines.join("\n") + "\n");
      cluster.#nodes.push({ name, port: ports[i]!.port, clusterPort: ports[i]!.clusterPort, conf, proc: undefined, log: "" });
    }
    for (let i = 0; i < nodes; i++) cluster.#spawn(i);
    await cluster.ready();
    return cluster;
  }

  #spawn(i: number): void {
    const node = this.#nodes[i]!;
    const proc = spawn(this.#bin, ["-c", node.conf], { stdio: ["ignore", "ignore", "pipe"] });
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (node.log = (node.log + d).slice(-20_000)));
    proc.once("exit", () => {
      if (node.proc === proc) node.proc = undefined;
    });
    node.proc = proc;
  }

  /** The nodes, in order. */
  get nodes(): NatsNode[] {
    return this.#nodes.map((n) => ({ name: n.name, port: n.port, url: `nats://127.0.0.1:${n.port}`, running: n.proc !== undefined }));
  }

  /** Every node's URL, comma-separated (the NATS_URL of a service). */
  get url(): string {
    return this.nodes.map((n) => n.url).join(",");
  }

  /** Waits until JetStream answers account info through the running nodes. */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const nc = await connect({ servers: this.nodes.filter((n) => n.running).map((n) => n.url), timeout: 1000, reconnect: false });
        try {
          await (await jetstreamManager(nc, { timeout: 2000 })).getAccountInfo();
          return;
        } finally {
          await nc.close();
        }
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`NATS did not become ready: ${String(err)}\n${this.#nodes.map((n) => n.log.slice(-2000)).join("\n")}`);
        await sleep(250);
      }
    }
  }

  /** SIGKILLs node `i` and waits for it to exit. */
  async kill(i: number): Promise<void> {
    const proc = this.#nodes[i]!.proc;
    if (proc === undefined) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }

  /** Starts node `i` again (same store, same ports) and waits until it accepts connections. */
  async restart(i: number): Promise<void> {
    if (this.#nodes[i]!.proc !== undefined) return;
    this.#spawn(i);
    await this.ready();
  }

  /** Stops every node and removes the stores. */
  async stop(): Promise<void> {
    for (let i = 0; i < this.#nodes.length; i++) await this.kill(i);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
