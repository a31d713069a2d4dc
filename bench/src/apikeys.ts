/**
 * API-key benchmarks: tenancy, identity and keys each in a process of its
 * own (started from their built main.js, as deployed), driven by the same
 * grpc-js load generator. Every comparison alternates rounds of baseline
 * and subject and reports the median of the per-round ratios, so drift of
 * this shared machine hits both sides alike.
 *
 *   VerifyApiKey, warm:  one key, every cache warm (HMAC + map lookups)
 *   VerifyApiKey, cold:  a different key per call and refresh_permissions,
 *                        so each call reads Postgres and asks identity
 *   baseline:            the no-op Ping on the same keys process
 *   GetTenant on tenancy with an API key (resolver cache warm) against the
 *   same call with the creator's access token
 *   raw HMAC-SHA256 of a key secret, in process: the physical limit
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { ApiKeyService, DiagnosticsService, Environment, GetTenantRequestSchema, PingRequestSchema, Region, TenancyService, UserService, AuthService, VerifyApiKeyRequestSchema } from "@bulwark/contracts";
import { generateApiKey } from "@bulwark/core";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createHmac } from "node:crypto";
import pg from "pg";
import { benchSettings, drive, line } from "./drive.js";
import type { LoadResult, LoadSpec } from "./load.js";
import { adminUrl, benchBootstrapToken, startBenchMesh } from "./mesh.js";

/** Rounds of each alternation (BENCH_ROUNDS). */
const rounds = Number(process.env["BENCH_ROUNDS"] ?? 3);

function transportTo(port: number, headers: Record<string, string> = {}): Transport {
  return createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [(next) => (req) => (Object.entries(headers).forEach(([k, v]) => req.header.set(k, v)), next(req))] });
}

/** Alternates baseline and subject rounds; prints each side's last round and the median ratio. */
async function alternate(names: [string, string], base: Omit<LoadSpec, keyof typeof benchSettings>, subject: Omit<LoadSpec, keyof typeof benchSettings>, settings = benchSettings): Promise<{ base: LoadResult; subject: LoadResult; ratio: number }> {
  const ratios: number[] = [];
  let b: LoadResult | undefined;
  let s: LoadResult | undefined;
  const per = { ...settings, durationMs: Math.max(1000, Math.floor(settings.durationMs / Math.max(1, rounds))) };
  for (let i = 0; i < rounds; i++) {
    b = await drive({ ...base, ...per });
    s = await drive({ ...subject, ...per });
    ratios.push(b.rps > 0 ? s.rps / b.rps : 0);
  }
  ratios.sort((x, y) => x - y);
  const ratio = ratios[Math.floor(ratios.length / 2)] ?? 0;
  console.log(line(names[0], b!));
  console.log(line(names[1], s!));
  return { base: b!, subject: s!, ratio };
}

/** Raw HMAC-SHA256 of a 32-character secret in this process, for benchSettings.durationMs. */
function rawHmac(pepper: string): LoadResult {
  const secret = generateApiKey("live").parsed.secret;
  const latencies: number[] = [];
  const end = performance.now() + benchSettings.durationMs;
  const begin = performance.now();
  while (performance.now() < end) {
    const t = performance.now();
    for (let i = 0; i < 100; i++) createHmac("sha256", pepper).update(secret, "ascii").digest();
    latencies.push((performance.now() - t) / 100);
  }
  const elapsed = performance.now() - begin;
  latencies.sort((a, b) => a - b);
  return { calls: latencies.length * 100, errors: 0, rps: ((latencies.length * 100) / elapsed) * 1000, p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0, p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0 };
}

/** Inserts `n` keys of one owner straight into keys' table (hashed with the mesh's pepper), for the cold row. */
async function insertColdKeys(schema: string, pepper: string, tenantId: string, ownerId: string, granted: string[], n: number): Promise<string[]> {
  const keys = Array.from({ length: n }, () => generateApiKey("live"));
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(
      `insert into "${schema}".api_keys (id, tenant_id, name, environment, owner_id, scopes, granted, secret_hash, state, created_at, updated_at, expires_at, cap_id)
       select id, $2, 'cold', 'live', $3, $4::text[], $4::text[], decode(h, 'hex'), 'active', now(), now(), now() + interval '1 day', id from unnest($1::text[], $5::text[]) as t(id, h)`,
      [keys.map((k) => k.parsed.id), tenantId, ownerId, granted, keys.map((k) => createHmac("sha256", pepper).update(k.parsed.secret, "ascii").digest("hex"))],
    );
  } finally {
    await admin.end();
  }
  return keys.map((k) => k.key);
}

/** The API-key rows of `npm run bench`. */
export async function apiKeyBenchmarks(): Promise<void> {
  const mesh = await startBenchMesh({ identity: true });
  try {
    const ops = createClient(TenancyService, transportTo(mesh.ports.tenancy, { authorization: `Bearer ${benchBootstrapToken}` }));
    const { tenant } = await ops.createTenant({ slug: `benchk-${Date.now().toString(36)}`, displayName: "Bench Keys", region: Region.EU });
    const tenantId = tenant!.id;
    const users = createClient(UserService, transportTo(mesh.ports.identity, { authorization: `Bearer ${benchBootstrapToken}`, "bulwark-tenant": tenantId }));
    const password = `Velvet-harbor-${Math.random().toString(36).slice(2)}-cobalt`;
    const email = "bench.keys@example.test";
    const { invitationToken, user } = await users.createUser({ email, displayName: "Bench Keys", roleIds: ["system:developer"], returnInvitationToken: true });
    await createClient(UserService, transportTo(mesh.ports.identity)).acceptInvitation({ invitationToken, password });
    const signedIn = await createClient(AuthService, transportTo(mesh.ports.identity)).signIn({ tenantSlug: tenant!.slug, email, password, device: "bench" });
    if (signedIn.result.case !== "tokens") throw new Error("the bench user got an MFA challenge");
    const accessToken = signedIn.result.value.accessToken;
    const created = await createClient(ApiKeyService, transportTo(mesh.ports.keys, { authorization: `Bearer ${accessToken}` })).createApiKey({ name: "bench", environment: Environment.LIVE, scopes: ["read"] });
    const cold = await insertColdKeys(mesh.schemaOf("keys"), mesh.apiKeyPepper, tenantId, user!.id, created.key!.grantedPermissions, 40_000);

    const keysAddress = `127.0.0.1:${mesh.ports.keys}`;
    const tenancyAddress = `127.0.0.1:${mesh.ports.tenancy}`;
    const asService = { authorization: `Bearer ${benchBootstrapToken}` };
    const ping = { target: keysAddress, path: `/${DiagnosticsService.typeName}/Ping`, request: Buffer.from(toBinary(PingRequestSchema, create(PingRequestSchema, { payload: new Uint8Array(16) }))).toString("base64"), metadata: asService };
    const verifyPath = `/${ApiKeyService.typeName}/VerifyApiKey`;
    const warm = { target: keysAddress, path: verifyPath, request: Buffer.from(toBinary(VerifyApiKeyRequestSchema, create(VerifyApiKeyRequestSchema, { token: created.token }))).toString("base64"), metadata: asService };
    const coldRequests = cold.map((key) => Buffer.from(toBinary(VerifyApiKeyRequestSchema, create(VerifyApiKeyRequestSchema, { token: key, refreshPermissions: true }))).toString("base64"));
    const coldSpec = { ...warm, requests: coldRequests };
    const getTenant = Buffer.from(toBinary(GetTenantRequestSchema, create(GetTenantRequestSchema, { tenantId }))).toString("base64");
    const withToken = { target: tenancyAddress, path: `/${TenancyService.typeName}/GetTenant`, request: getTenant, metadata: { authorization: `Bearer ${accessToken}` } };
    const withKey = { ...withToken, metadata: { authorization: `Bearer ${created.token}` } };

    // Settle the fresh processes (JIT, pools) before measuring.
    await drive({ ...warm, ...benchSettings, warmupMs: 0, durationMs: 2000 });
    await drive({ ...withKey, ...benchSettings, warmupMs: 0, durationMs: 2000 });
    const hmac = rawHmac(mesh.apiKeyPepper);
    console.log(line("(k) raw HMAC-SHA256 of a key secret (in process)", hmac));
    const w = await alternate(["(l) no-op Ping on keys (own process)", "(m) VerifyApiKey, warm cache"], ping, warm);
    // The cold row never repeats a key within its rounds (40,000 distinct keys, each a Postgres read and an identity call).
    const c = await alternate(["    no-op Ping on keys (own process)", "(n) VerifyApiKey, cold (Postgres + identity per call)"], ping, coldSpec, { ...benchSettings, warmupMs: 200 });
    const t = await alternate(["(o) GetTenant on tenancy, access token", "(p) GetTenant on tenancy, API key"], withToken, withKey);
    console.log("");
    console.log(`m/l = ${w.ratio.toFixed(2)}   n/l = ${c.ratio.toFixed(2)}   p/o = ${t.ratio.toFixed(2)}   (medians of ${rounds} alternating rounds; aims: m/l ≥ 0.7, p/o ≥ 0.9)`);
    console.log(`m/k = ${(w.subject.rps / hmac.rps).toFixed(4)} of raw HMAC`);
  } finally {
    await mesh.close();
  }
}
