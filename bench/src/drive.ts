import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { LoadResult, LoadSpec } from "./load.js";

const loadScript = fileURLToPath(new URL("./load.js", import.meta.url));

/** Runs the grpc-js load generator in a child process against a target. */
export function drive(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(loadScript, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    child.once("message", (result) => resolve(result as LoadResult));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`load generator exited with ${code}`));
    });
    child.send(spec);
  });
}

/** Environment knobs so CI can shorten a run: BENCH_SECONDS, BENCH_CONCURRENCY. */
export const benchSettings = {
  durationMs: Number(process.env["BENCH_SECONDS"] ?? 5) * 1000,
  warmupMs: Math.min(2000, Number(process.env["BENCH_SECONDS"] ?? 5) * 400),
  concurrency: Number(process.env["BENCH_CONCURRENCY"] ?? 32),
};

/** Formats one benchmark line. */
export function line(name: string, r: LoadResult): string {
  const err = r.errors > 0 ? `  errors=${r.errors} (${r.firstError})` : "";
  if (r.calls === 0) return `${name.padEnd(48)} no successful call${err}`;
  return `${name.padEnd(48)} ${r.rps.toFixed(0).padStart(7)} req/s   p50 ${r.p50Ms.toFixed(2)} ms   p99 ${r.p99Ms.toFixed(2)} ms${err}`;
}
