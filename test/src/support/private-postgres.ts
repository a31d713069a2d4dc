/**
 * A Postgres instance of the suite's own (initdb + pg_ctl from the
 * installed server binaries, on a free port, trust auth for `postgres`), so
 * a fault test can restart it under load without disturbing the shared
 * cluster on 5432 that everyone else's tests use. Run as the `postgres` OS
 * user when the test runs as root (initdb refuses root).
 */
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./ports.js";

/** The directory of the Postgres server binaries (PG_BIN, else the newest under /usr/lib/postgresql). */
export function postgresBinaries(): string {
  const fromEnv = process.env["PG_BIN"];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a)) : [];
  if (versions.length === 0) throw new Error("no Postgres server binaries found: set PG_BIN to the directory holding initdb and pg_ctl");
  return join(root, versions[0]!, "bin");
}

function osUser(name: string): { uid: number; gid: number } | undefined {
  const uid = spawnSync("id", ["-u", name], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", name], { encoding: "utf8" });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A private Postgres server. */
export class PrivatePostgres {
  readonly port: number;
  readonly #dir: string;
  readonly #bin: string;
  readonly #as: { uid: number; gid: number } | undefined;

  private constructor(port: number, dir: string, bin: string, as: { uid: number; gid: number } | undefined) {
    this.port = port;
    this.#dir = dir;
    this.#bin = bin;
    this.#as = as;
  }

  /** The superuser's URL of database `db`. */
  url(db = "postgres"): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }

  #run(tool: string, args: string[]): void {
    const opts: SpawnSyncOptions = { encoding: "utf8", ...(this.#as !== undefined ? { uid: this.#as.uid, gid: this.#as.gid } : {}), env: { PATH: process.env["PATH"] ?? "", LC_ALL: "C.UTF-8" } };
    const r = spawnSync(join(this.#bin, tool), args, opts);
    if (r.status !== 0) throw new Error(`${tool} ${args.join(" ")} failed: ${String(r.stderr)}${String(r.stdout)}`);
  }

  /** initdb in a temporary directory, then start on a free port with a database `bulwark`. */
  static async start(): Promise<PrivatePostgres> {
    const as = process.getuid?.() === 0 ? osUser("postgres") : undefined;
    if (process.getuid?.() === 0 && as === undefined) throw new Error("running as root needs a 'postgres' OS user for initdb");
    const dir = mkdtempSync(join(tmpdir(), "bulwark-pg-"));
    chmodSync(dir, 0o700);
    if (as !== undefined) chownSync(dir, as.uid, as.gid);
    const server = new PrivatePostgres(await freePort(), dir, postgresBinaries(), as);
    server.#run("initdb", ["-D", join(dir, "data"), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
    server.#startServer();
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    await admin.query("create database bulwark");
    await admin.end();
    return server;
  }

  #startServer(): void {
    // Sockets in the data directory (not /var/run/postgresql, which the shared cluster uses); fsync off: a test database.
    const opts = `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.#dir} -c fsync=off -c max_connections=200`;
    this.#run("pg_ctl", ["-D", join(this.#dir, "data"), "-l", join(this.#dir, "log"), "-o", opts, "-w", "-t", "60", "start"]);
  }

  /** Restarts the server (fast shutdown: every connection is closed, as a failover does). */
  restart(): void {
    this.#run("pg_ctl", ["-D", join(this.#dir, "data"), "-m", "fast", "-w", "-t", "60", "stop"]);
    this.#startServer();
  }

  /** Stops the server and removes its directory. */
  stop(): void {
    try {
      this.#run("pg_ctl", ["-D", join(this.#dir, "data"), "-m", "immediate", "-w", "stop"]);
    } finally {
      rmSync(this.#dir, { recursive: true, force: true });
    }
  }
}
