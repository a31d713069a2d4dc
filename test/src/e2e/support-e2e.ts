/**
 * Helpers shared by the end-to-end and fault tests: asserting error codes,
 * collecting events with a real inbox-backed EventConsumer, a TCP proxy that
 * can "unplug" Postgres or NATS for one service, and running a service as a
 * child process.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, trace } from "@opentelemetry/api";
import { currentContext, MeshKeys, type CallContext, type ServiceConfig } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { EventConsumer, type EventsLogger } from "@bulwark/events";
import type { Envelope } from "@bulwark/contracts";
import type { Message } from "@bufbuild/protobuf";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

/** A logger that drops everything (consumers and relays in tests). */
export const quietLogger: EventsLogger = { warn: () => undefined, error: () => undefined };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves undefined after `ms` without keeping the process alive (for Promise.race deadlines). */
export const deadline = (ms: number): Promise<undefined> => new Promise((r) => setTimeout(() => r(undefined), ms).unref());

/** Awaits `call` and asserts it fails with `code`; returns the error. */
export async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  let result: unknown;
  try {
    result = await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(ce.code, code, `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.rawMessage}`);
    return ce;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded: ${JSON.stringify(result, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`);
}

/** The code of a failed call, or "OK". */
export async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

/** One event as a test consumer handled it, with the context it ran in. */
export interface Handled {
  readonly envelope: Envelope;
  /** The unpacked payload (undefined if its type is unknown). */
  readonly payload: Message | undefined;
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The call context the consumer restored for the handler. */
  readonly ctx: CallContext | undefined;
  /** The trace id active in the handler. */
  readonly traceId: string | undefined;
}

/** A running test consumer and what it has handled. */
export interface Collector {
  readonly handled: Handled[];
  readonly duplicates: string[];
  readonly consumer: EventConsumer;
  /** Handled events whose subject ends with `.<verb>` and whose aggregate is `id`. */
  of(verb: string, aggregateId?: string): Handled[];
  stop(): Promise<void>;
}

/** Starts an inbox-backed durable consumer that records every event it handles. */
export async function collectEvents(opts: {
  db: Database;
  nc: NatsConnection;
  js: JetStreamClient;
  stream: string;
  /** The service that owns the stream (its signature is checked). */
  source: string;
  subjectPrefix: string;
  durable: string;
  filterSubjects: string[];
}): Promise<Collector> {
  const handled: Handled[] = [];
  const duplicates: string[] = [];
  const consumer = new EventConsumer({
    ...opts,
    keys: MeshKeys.development("e2e"),
    logger: quietLogger,
    backoffMs: [100],
    maxDeliver: 5,
    ackWaitMs: 5_000,
    onDuplicate: (id) => duplicates.push(id),
    async handle(event) {
      handled.push({
        envelope: event.envelope,
        payload: event.payload,
        subject: event.subject,
        headers: event.headers,
        ctx: currentContext(),
        traceId: trace.getSpanContext(context.active())?.traceId,
      });
    },
  });
  await consumer.start();
  let stopped = false;
  return {
    handled,
    duplicates,
    consumer,
    of: (verb, aggregateId) => handled.filter((h) => h.subject.endsWith(`.${verb}`) && (aggregateId === undefined || h.envelope.aggregateId === aggregateId)),
    async stop() {
      if (stopped) return;
      stopped = true;
      await consumer.stop();
    },
  };
}

/**
 * A TCP proxy in front of a dependency. `stop()` closes the listener and
 * destroys every proxied connection (the dependency "goes away" for the
 * service behind it only); `start()` listens again on the same port.
 */
export class TcpProxy {
  #server: net.Server | undefined;
  readonly #sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  get running(): boolean {
    return this.#server !== undefined;
  }

  async start(): Promise<number> {
    if (this.#server !== undefined) return this.port;
    const server = net.createServer((client) => {
      const upstream = net.connect({ host: this.targetHost, port: this.targetPort });
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.once("close", () => this.#sockets.delete(s));
      }
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port: this.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
    return this.port;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await closed;
  }
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** True if something accepts TCP connections on the port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The entry point of the built tenancy service. */
export const tenancyMain = fileURLToPath(new URL("../../../services/tenancy/dist/src/main.js", import.meta.url));

/** The environment a child process needs to run as the service `config` describes. */
export function envFor(config: ServiceConfig, overrides: Record<string, string> = {}): Record<string, string> {
  const pick: (keyof ServiceConfig)[] = [
    "NODE_ENV",
    "HOST",
    "DATABASE_URL",
    "DATABASE_ADMIN_URL",
    "DATABASE_SCHEMA",
    "DATABASE_POOL_MAX",
    "NATS_URL",
    "EVENTS_SUBJECT_PREFIX",
    "BULWARK_BOOTSTRAP_TOKEN",
    "BULWARK_SERVICE_SECRET",
    "BULWARK_BOOTSTRAP_RETIRES",
    "SHUTDOWN_GRACE_MS",
  ];
  const env: Record<string, string> = {};
  for (const key of pick) env[key] = String(config[key]);
  return { ...env, LOG_LEVEL: "info", ...overrides };
}

/** A service running as a child process. */
export interface ChildService {
  readonly proc: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Resolves once the service accepts connections on `port` (rejects if it
   * exits first). With `logged`, also waits for the "listening" log line:
   * main() installs its SIGTERM/SIGINT handlers only after start-up returns,
   * so a signal sent the moment the port opens can still kill it outright.
   */
  ready(port: number, opts?: { timeoutMs?: number; logged?: boolean }): Promise<void>;
  /** SIGKILLs the process if it still runs and waits for it. */
  kill(): Promise<void>;
}

/** Spawns `node <tenancy main>` with exactly `env` (plus PATH). */
export function spawnService(env: Record<string, string>, entry = tenancyMain): ChildService {
  const proc = spawn(process.execPath, [entry], { env: { PATH: process.env["PATH"] ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  return {
    proc,
    output: () => out + err,
    stderr: () => err,
    exited,
    async ready(port, { timeoutMs = 15_000, logged = false } = {}) {
      const deadline = Date.now() + timeoutMs;
      while (!(await portOpen(port)) || (logged && !/"msg":"tenancy listening"/.test(out))) {
        if (done) throw new Error(`service exited before listening:\n${out}${err}`);
        if (Date.now() > deadline) throw new Error(`service not listening within ${timeoutMs} ms:\n${out}${err}`);
        await sleep(25);
      }
    },
    async kill() {
      if (!done) proc.kill("SIGKILL");
      await exited;
    },
  };
}
