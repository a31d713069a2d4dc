/**
 * The load generator: a stock @grpc/grpc-js client in its own process (so it
 * does not share the server's core), keeping `concurrency` unary calls in
 * flight for a fixed time and reporting throughput and latency percentiles.
 * Every benchmark drives its target with this same client.
 */
import * as grpc from "@grpc/grpc-js";
import { Agent, request as httpRequest } from "node:http";

export interface LoadSpec {
  readonly target: string;
  readonly path: string;
  /** The serialized request message, base64 (JSON text for `http-json`). */
  readonly request: string;
  /** Several serialized requests, base64, sent in turn (overrides `request`). */
  readonly requests?: readonly string[];
  readonly metadata: Record<string, string>;
  /**
   * `grpc` (default): the grpc-js client over HTTP/2. `http-json`: HTTP/1.1
   * POSTs of JSON bodies (`requests`, as text) with keep-alive, one
   * connection per call in flight — how a browser or a Connect/REST client
   * calls, and how other auth servers are measured.
   */
  readonly protocol?: "grpc" | "http-json";
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface LoadResult {
  readonly calls: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const identity = (b: Buffer): Buffer => b;

/** One call: resolves with an error text, or undefined on success. */
type Caller = (body: Buffer) => Promise<string | undefined>;

function grpcCaller(spec: LoadSpec): { call: Caller; close(): void } {
  const client = new grpc.Client(spec.target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(spec.metadata)) md.set(k, v);
  return {
    call: (body) => new Promise((resolve) => client.makeUnaryRequest(spec.path, identity, identity, body, md, (err) => resolve(err ? `${err.code} ${err.details}` : undefined))),
    close: () => client.close(),
  };
}

function httpJsonCaller(spec: LoadSpec): { call: Caller; close(): void } {
  const [host, port] = spec.target.split(":");
  const agent = new Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const call: Caller = (body) =>
    new Promise((resolve) => {
      const req = httpRequest({ host, port: Number(port), path: spec.path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": body.length, ...spec.metadata } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(res.statusCode === 200 ? undefined : `HTTP ${res.statusCode} ${Buffer.concat(chunks).toString("utf8").slice(0, 200)}`));
      });
      req.on("error", (err) => resolve(err.message));
      req.end(body);
    });
  return { call, close: () => agent.destroy() };
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const client = spec.protocol === "http-json" ? httpJsonCaller(spec) : grpcCaller(spec);
  const bodies = (spec.requests ?? [spec.request]).map((r) => (spec.protocol === "http-json" ? Buffer.from(r, "utf8") : Buffer.from(r, "base64")));
  let next = 0;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let measuring = false;
  let stop = false;
  const call = async (): Promise<void> => {
    const start = performance.now();
    const err = await client.call(bodies[next++ % bodies.length]!);
    if (!measuring) return;
    if (err !== undefined) {
      errors++;
      firstError ??= err;
    } else latencies.push(performance.now() - start);
  };
  const worker = async (): Promise<void> => {
    while (!stop) await call();
  };
  const workers = Array.from({ length: spec.concurrency }, worker);
  await new Promise((r) => setTimeout(r, spec.warmupMs));
  measuring = true;
  const begin = performance.now();
  await new Promise((r) => setTimeout(r, spec.durationMs));
  measuring = false;
  const elapsed = performance.now() - begin;
  stop = true;
  await Promise.all(workers);
  client.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? Number.NaN;
  return { calls: latencies.length, errors, ...(firstError !== undefined ? { firstError } : {}), rps: (latencies.length / elapsed) * 1000, p50Ms: pct(0.5), p99Ms: pct(0.99) };
}

process.once("message", (spec: LoadSpec) => {
  void run(spec).then((result) => {
    process.send?.(result, () => process.exit(0));
  });
});
