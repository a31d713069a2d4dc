/**
 * `npm run bench`: every benchmark of the mesh, in one run, against the
 * baselines measured in that same run (these machines are noisy, so only
 * ratios within a run mean anything). All rows are driven by the same
 * load generator in a separate process; the services of the mesh run each
 * in its own process, started from their built main.js as in production.
 * BENCH_ONLY=signin, keys or apikeys runs those rows alone (while working on them).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { PingRequestSchema, TenancyService } from "@bulwark/contracts";
import { bareGrpcJs, bulwarkStack, pingPath, plainConnectNode, type Target } from "./baselines.js";
import { benchSettings, drive, line } from "./drive.js";
import type { LoadResult } from "./load.js";
import { identityBenchmarks } from "./identity.js";
import { keysBenchmarks } from "./keys.js";
import { startBenchMesh } from "./mesh.js";
import { apiKeyBenchmarks } from "./apikeys.js";
import { complianceBenchmarks } from "./compliance.js";
import { postureBenchmarks } from "./posture.js";

const ping = Buffer.from(toBinary(PingRequestSchema, create(PingRequestSchema, { payload: new Uint8Array(16) }))).toString("base64");

async function measure(name: string, target: Target, path: string, request: string, metadata: Record<string, string> = {}): Promise<LoadResult> {
  const result = await drive({ target: target.address, path, request, metadata, ...benchSettings });
  console.log(line(name, result));
  return result;
}

async function standalone(name: string, start: () => Promise<Target>): Promise<LoadResult> {
  const target = await start();
  try {
    return await measure(name, target, pingPath, ping);
  } finally {
    await target.close();
  }
}

if (process.env["BENCH_ONLY"] === "compliance") {
  // Just the compliance rows (BENCH_ONLY=compliance npm run bench).
  await complianceBenchmarks();
  process.exit(0);
}
if (process.env["BENCH_ONLY"] === "posture") {
  // Just the posture rows (BENCH_ONLY=posture npm run bench): tenancy, keys, identity and compliance in their own processes.
  await postureBenchmarks();
  process.exit(0);
}
if (process.env["BENCH_ONLY"] === "keys") {
  // Just the keys rows (BENCH_ONLY=keys npm run bench): a tenancy for the tenant, keys in its own process.
  const only = await startBenchMesh({ identity: true });
  try {
    await keysBenchmarks(only);
  } finally {
    await only.close();
  }
  process.exit(0);
}
if (process.env["BENCH_ONLY"] === "apikeys") {
  // Just the API-key rows (BENCH_ONLY=apikeys npm run bench): tenancy, identity and keys each in its own process.
  await apiKeyBenchmarks();
  process.exit(0);
}
console.log(`Bulwark benchmarks: grpc-js client in its own process, ${benchSettings.concurrency} calls in flight, ${benchSettings.durationMs / 1000}s per row\n`);
if (process.env["BENCH_ONLY"] === "signin") {
  const mesh = await startBenchMesh({ identity: true });
  try {
    await drive({ target: mesh.address, path: pingPath, request: ping, metadata: {}, ...benchSettings, warmupMs: 0, durationMs: 2000 });
    const b = await measure("(b) Bulwark stack (tenancy process), no-op Ping", mesh, pingPath, ping);
    await identityBenchmarks(mesh, b);
  } finally {
    await mesh.close();
  }
  process.exit(0);
}
const a = await standalone("(a) bare @grpc/grpc-js server, no-op", bareGrpcJs);
const bare = await standalone("    Bulwark server + pipeline alone, no-op Ping", bulwarkStack);
const mesh = await startBenchMesh({ identity: true });
let b: LoadResult;
let c: LoadResult;
try {
  // The services just started (migrations, key generation, JIT): settle them first.
  await drive({ target: mesh.address, path: pingPath, request: ping, metadata: {}, ...benchSettings, warmupMs: 0, durationMs: 3000 });
  b = await measure("(b) Bulwark stack (tenancy process), no-op Ping", mesh, pingPath, ping);
  c = await measure("(c) GetTenant, full interceptor chain", mesh, `/${TenancyService.typeName}/GetTenant`, mesh.getTenantRequest, { authorization: `Bearer ${mesh.token}` });
  console.log("");
  await identityBenchmarks(mesh, b);
  console.log("");
  await keysBenchmarks(mesh);
  console.log("");
} finally {
  await mesh.close();
}
const uncachedMesh = await startBenchMesh({ env: { CACHE_TTL_MS: "0" } });
let uncached: LoadResult;
try {
  uncached = await measure("    GetTenant with the cache off (Postgres per call)", uncachedMesh, `/${TenancyService.typeName}/GetTenant`, uncachedMesh.getTenantRequest, { authorization: `Bearer ${uncachedMesh.token}` });
} finally {
  await uncachedMesh.close();
}
await apiKeyBenchmarks();
console.log("");
await complianceBenchmarks();
console.log("");
await postureBenchmarks();
console.log("");
const ref = await standalone("    connect-node adapter alone, no-op (reference)", plainConnectNode);
console.log("");
console.log(`b/a = ${(b.rps / a.rps).toFixed(2)}   c/b = ${(c.rps / b.rps).toFixed(2)}   (server + pipeline alone / a = ${(bare.rps / a.rps).toFixed(2)})`);
console.log(`(connect-node alone / a = ${(ref.rps / a.rps).toFixed(2)}; uncached GetTenant / b = ${(uncached.rps / b.rps).toFixed(2)})`);
