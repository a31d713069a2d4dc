/**
 * The keys service's rows: Encrypt and Decrypt of 1 KiB through the full
 * chain (gRPC, pipeline, credential, authorization, validation, the
 * handler with its cached ring and data key, AES-256-GCM) against the no-op
 * Ping of the same keys process, measured in alternating rounds (Ping,
 * Encrypt, Decrypt, again) and reported with the median of the per-round
 * ratios, since one noisy round would skew a single pair. Keys runs as its
 * own process (the mesh's), as in a deployment. Raw in-process AES-256-GCM of 1 KiB is
 * the physical limit.
 */
import { createCipheriv, randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { createKeysClients, DecryptRequestSchema, EncryptRequestSchema, PingRequestSchema } from "@bulwark/contracts";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { benchSettings, drive, line } from "./drive.js";
import type { LoadResult } from "./load.js";
import { benchBootstrapToken, type BenchMesh } from "./mesh.js";

const rounds = Number(process.env["BENCH_ROUNDS"] ?? 3);

/** Raw AES-256-GCM of 1 KiB with a fresh nonce, in this process, for `durationMs`. */
export function rawAesGcm(): LoadResult {
  const key = randomBytes(32);
  const plaintext = randomBytes(1024);
  const latencies: number[] = [];
  const end = performance.now() + benchSettings.durationMs;
  const begin = performance.now();
  while (performance.now() < end) {
    const t = performance.now();
    const c = createCipheriv("aes-256-gcm", key, randomBytes(12));
    c.setAAD(Buffer.from("tenant\0purpose"));
    c.update(plaintext);
    c.final();
    c.getAuthTag();
    latencies.push(performance.now() - t);
  }
  const elapsed = performance.now() - begin;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? Number.NaN;
  return { calls: latencies.length, errors: 0, rps: (latencies.length / elapsed) * 1000, p50Ms: pct(0.5), p99Ms: pct(0.99) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** The keys rows, against the mesh's keys process (a mesh started with identity, which brings keys). */
export async function keysBenchmarks(mesh: BenchMesh): Promise<void> {
  const address = `127.0.0.1:${mesh.ports.keys}`;
  const metadata = { authorization: `Bearer ${benchBootstrapToken}`, "bulwark-tenant": mesh.tenantId };
  const client = createKeysClients(createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [(next) => (req) => (Object.entries(metadata).forEach(([k, v]) => req.header.set(k, v)), next(req))] }));
  const plaintext = randomBytes(1024);
  const { ciphertext } = await client.encryption.encrypt({ plaintext, purpose: "bench.payload" });
  const b64 = (schema_: Parameters<typeof toBinary>[0], init: object): string => Buffer.from(toBinary(schema_, create(schema_, init as never))).toString("base64");
  const pingReq = b64(PingRequestSchema, { payload: new Uint8Array(16) });
  const encReq = b64(EncryptRequestSchema, { plaintext, purpose: "bench.payload" });
  const decReq = b64(DecryptRequestSchema, { ciphertext, purpose: "bench.payload" });
  await drive({ target: address, path: "/bulwark.keys.v1.EncryptionService/Encrypt", request: encReq, metadata, ...benchSettings, warmupMs: 0, durationMs: 2000 });
  const rows: { ping: LoadResult; enc: LoadResult; dec: LoadResult }[] = [];
  for (let r = 0; r < rounds; r++) {
    const ping = await drive({ target: address, path: "/bulwark.diagnostics.v1alpha1.DiagnosticsService/Ping", request: pingReq, metadata: {}, ...benchSettings });
    const enc = await drive({ target: address, path: "/bulwark.keys.v1.EncryptionService/Encrypt", request: encReq, metadata, ...benchSettings });
    const dec = await drive({ target: address, path: "/bulwark.keys.v1.EncryptionService/Decrypt", request: decReq, metadata, ...benchSettings });
    rows.push({ ping, enc, dec });
    console.log(line(`    round ${r + 1}: Ping on keys`, ping));
    console.log(line(`    round ${r + 1}: Encrypt 1 KiB`, enc));
    console.log(line(`    round ${r + 1}: Decrypt 1 KiB`, dec));
  }
  const pick = (f: (x: (typeof rows)[number]) => LoadResult): LoadResult => {
    const sorted = [...rows].sort((x, y) => f(x).rps - f(y).rps);
    return f(sorted[Math.floor(sorted.length / 2)]!);
  };
  const raw = rawAesGcm();
  console.log(line("(k) Ping on keys (own process), median round", pick((x) => x.ping)));
  console.log(line("(l) Encrypt 1 KiB, full chain, median round", pick((x) => x.enc)));
  console.log(line("(m) Decrypt 1 KiB, full chain, median round", pick((x) => x.dec)));
  console.log(line("(n) raw AES-256-GCM 1 KiB, in process, 1 thread", raw));
  console.log(`l/k = ${median(rows.map((x) => x.enc.rps / x.ping.rps)).toFixed(2)}   m/k = ${median(rows.map((x) => x.dec.rps / x.ping.rps)).toFixed(2)}   (median of ${rounds} alternating rounds)`);
}
