/**
 * The load generator: a stock @grpc/grpc-js client in its own process (so it
 * does not share the server's core), keeping `concurrency` unary calls in
 * flight for a fixed time and reporting throughput and latency percentiles.
 * Every benchmark drives its target with this same client.
 */
import * as grpc from "@grpc/grpc-js";

export interface LoadSpec {
  readonly target: string;
  readonly path: string;
  /** The serialized request message, base64. */
  readonly request: string;
  /** Several serialized requests, base64, sent in turn (overrides `request`). */
  readonly requests?: readonly string[];
  readonly metadata: Record<string, string>;
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

async function run(spec: LoadSpec): Promise<LoadResult> {
  const client = new grpc.Client(spec.target, grpc.credentials.createInsecure());
  const bodies = (spec.requests ?? [spec.request]).map((r) => Buffer.from(r, "base64"));
  let next = 0;
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(spec.metadata)) md.set(k, v);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let measuring = false;
  let stop = false;
  const call = (): Promise<void> =>
    new Promise((resolve) => {
      const start = performance.now();
      const body = bodies[next++ % bodies.length]!;
      client.makeUnaryRequest(spec.path, identity, identity, body, md, (err) => {
        if (measuring) {
          if (err) {
            errors++;
            firstError ??= `${err.code} ${err.details}`;
          } else latencies.push(performance.now() - start);
        }
        resolve();
      });
    });
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
