import { create, toBinary } from "@bufbuild/protobuf";
import { AuthService, DiagnosticsService, SignInRequestSchema, TenancyService, UserService } from "@bulwark/contracts";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import argon2 from "argon2";
import { benchSettings, drive, line } from "./drive.js";
import type { LoadResult } from "./load.js";
import { backendPids, CpuMeter, cpuMsOf } from "./cpu.js";
import { adminUrl, type BenchMesh } from "./mesh.js";

/** OWASP's argon2id recommendation, identity's default. */
const owasp = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/**
 * The physical limit of sign-in: raw `argon2.verify` with identity's
 * parameters, as many in flight as the load generator keeps, in this process
 * (node's thread pool does the hashing, as it does inside identity).
 */
export async function rawArgon2Verify(): Promise<LoadResult & { cpuMsPerCall: number }> {
  const password = "Velvet-harbor-bench-cobalt-2026";
  const hash = await argon2.hash(password, owasp);
  const latencies: number[] = [];
  let measuring = false;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const start = performance.now();
      await argon2.verify(hash, password);
      if (measuring) latencies.push(performance.now() - start);
    }
  };
  const workers = Array.from({ length: benchSettings.concurrency }, worker);
  await new Promise((r) => setTimeout(r, benchSettings.warmupMs));
  measuring = true;
  const begin = performance.now();
  const cpu = process.cpuUsage();
  await new Promise((r) => setTimeout(r, benchSettings.durationMs));
  const used = process.cpuUsage(cpu);
  measuring = false;
  const elapsed = performance.now() - begin;
  stop = true;
  await Promise.all(workers);
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? Number.NaN;
  return { calls: latencies.length, errors: 0, rps: (latencies.length / elapsed) * 1000, p50Ms: pct(0.5), p99Ms: pct(0.99), cpuMsPerCall: (used.user + used.system) / 1000 / Math.max(1, latencies.length) };
}

/** Drives a load and reports the CPU each service process and its Postgres backends spent per successful call. */
async function driveMetered(mesh: BenchMesh, spec: Parameters<typeof drive>[0]): Promise<{ result: LoadResult; cpu: string }> {
  const before = await backendPids(adminUrl, mesh.roles);
  const meters = Object.entries(mesh.pids).map(([name, pid]) => ({ name, pid, meter: new CpuMeter([pid]), main: cpuMsOf(pid, pid) }));
  const pgMeter = new CpuMeter(before);
  const result = await drive(spec);
  const after = await backendPids(adminUrl, mesh.roles);
  // The load generator warms up first; count the whole run, calls of the warm-up included.
  const calls = Math.max(1, result.calls * ((spec.durationMs + spec.warmupMs) / spec.durationMs));
  const parts = meters.map((m) => `${m.name} ${(m.meter.since([m.pid]) / calls).toFixed(1)} (main thread ${((cpuMsOf(m.pid, m.pid) - m.main) / calls).toFixed(1)})`);
  parts.push(`postgres ${(pgMeter.since(new Set([...before, ...after])) / calls).toFixed(1)}`);
  return { result, cpu: `CPU ms per call: ${parts.join(", ")}` };
}

/** Active users with known passwords, created through the real API. */
async function users(mesh: BenchMesh, count: number): Promise<{ email: string; password: string }[]> {
  const transport = createGrpcTransport({
    baseUrl: `http://${mesh.identityAddress}`,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${mesh.token}`), req.header.set("bulwark-tenant", mesh.tenantId), next(req))],
  });
  const userService = createClient(UserService, transport);
  const anonymous = createClient(UserService, createGrpcTransport({ baseUrl: `http://${mesh.identityAddress}` }));
  const out: { email: string; password: string }[] = [];
  for (let i = 0; i < count; i++) {
    const email = `bench.user.${i}@example.test`;
    const password = `Velvet-harbor-${i}-${Math.random().toString(36).slice(2)}-cobalt`;
    const { invitationToken } = await userService.createUser({ email, displayName: `Bench User ${i}`, returnInvitationToken: true });
    await anonymous.acceptInvitation({ invitationToken, password });
    out.push({ email, password });
  }
  return out;
}

/** BENCH_ROUNDS: how many alternating baseline/sign-in rounds (the median ratio is reported). */
const rounds = Math.max(1, Number(process.env["BENCH_ROUNDS"] ?? 3));

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Sign-in throughput against raw argon2, and access-token verification
 * cost. The machine is shared and noisy, so raw argon2 (the baseline) and
 * sign-in (the subject) run in alternating rounds, each ratio within one
 * pair of neighbouring measurements, and the median ratio is the figure.
 */
export async function identityBenchmarks(mesh: BenchMesh, noop: LoadResult): Promise<void> {
  const accounts = await users(mesh, 8);
  const requests = accounts.map((a) => Buffer.from(toBinary(SignInRequestSchema, create(SignInRequestSchema, { tenantSlug: mesh.tenantSlug, email: a.email, password: a.password, device: "bench" }))).toString("base64"));
  const jsonRequests = accounts.map((a) => JSON.stringify({ tenantSlug: mesh.tenantSlug, email: a.email, password: a.password, device: "bench" }));
  const grpcRatios: number[] = [];
  const jsonRatios: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const raw = await rawArgon2Verify();
    console.log(line(`(d) raw argon2.verify, m=19456 t=2 p=1   #${round}`, raw));
    const { result: signIn, cpu } = await driveMetered(mesh, { target: mesh.identityAddress, path: `/${AuthService.typeName}/SignIn`, request: requests[0]!, requests, metadata: {}, ...benchSettings });
    console.log(line(`(e) SignIn, gRPC, ${benchSettings.concurrency} in flight   #${round}`, signIn));
    console.log(`      ${cpu} (argon2.verify alone: ${raw.cpuMsPerCall.toFixed(1)})`);
    const json = await drive({ target: mesh.identityAddress, path: `/${AuthService.typeName}/SignIn`, request: jsonRequests[0]!, requests: jsonRequests, metadata: {}, ...benchSettings, protocol: "http-json", concurrency: 8 });
    console.log(line(`(e') SignIn, HTTP/1.1 JSON, 8 clients   #${round}`, json));
    grpcRatios.push(signIn.rps / raw.rps);
    jsonRatios.push(json.rps / raw.rps);
  }

  const auth = createClient(AuthService, createGrpcTransport({ baseUrl: `http://${mesh.identityAddress}` }));
  const first = accounts[0]!;
  const tokens = await auth.signIn({ tenantSlug: mesh.tenantSlug, email: first.email, password: first.password, device: "bench" });
  if (tokens.result.case !== "tokens") throw new Error("bench user got an MFA challenge");
  const bearer = { authorization: `Bearer ${tokens.result.value.accessToken}` };
  const ping = await drive({ target: mesh.address, path: `/${DiagnosticsService.typeName}/Ping`, request: "", metadata: bearer, ...benchSettings });
  console.log(line("(f) Ping on tenancy with a user's access token", ping));
  const getTenant = await drive({ target: mesh.address, path: `/${TenancyService.typeName}/GetTenant`, request: mesh.getTenantRequest, metadata: bearer, ...benchSettings });
  console.log(line("(g) GetTenant with a user's access token", getTenant));
  console.log("");
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(" ");
  console.log(`e/d = ${median(grpcRatios).toFixed(2)} (median of ${fmt(grpcRatios)})   e'/d = ${median(jsonRatios).toFixed(2)} (median of ${fmt(jsonRatios)})`);
  console.log(`f/b = ${(ping.rps / noop.rps).toFixed(2)}   g/b = ${(getTenant.rps / noop.rps).toFixed(2)}`);
}
