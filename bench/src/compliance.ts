/**
 * The compliance rows: the export and the erasure of one data subject in a
 * tenant of 10 000 users (aim: under 10 s each), end to end as an officer
 * sees them — CreateDataSubjectRequest, VerifySubjectIdentity (and
 * ApproveErasure by a second person), the saga across tenancy, identity,
 * keys, audit and compliance, and for the export DownloadExport of the bundle.
 * Every service runs in its own process, as deployed. Each is run in
 * several rounds (a fresh subject each) and reported by the median and the
 * worst round.
 */
import assert from "node:assert/strict";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService, DataSubjectRequestService, RequestState, RequestType, RoleService, UserService } from "@bulwark/contracts";
import pg from "pg";
import { adminUrl, benchBootstrapToken, startBenchMesh, type BenchMesh } from "./mesh.js";

const users = 10_000;
const rounds = Number(process.env["BENCH_ROUNDS"] ?? 3);

function bearer(token: string, tenantId?: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    if (tenantId !== undefined) req.header.set("bulwark-tenant", tenantId);
    return next(req);
  };
}

function client<S extends Parameters<typeof createClient>[0]>(service: S, address: string, token: string, tenantId?: string): Client<S> {
  return createClient(service, createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [bearer(token, tenantId)] })) as Client<S>;
}

/** Writes `users` users (and their role grants) straight into identity's tables, as a populated tenant has them. */
async function populate(mesh: BenchMesh): Promise<void> {
  const schema = mesh.schemas["identity"]!;
  const db = new pg.Client({ connectionString: adminUrl });
  await db.connect();
  try {
    await db.query(
      `insert into "${schema}".users (id, tenant_id, email, display_name, state, mfa_enrolled, created_at, updated_at)
       select 'usr_bench' || g, $1, 'person' || g || '@bench.example', 'Person ' || g, 'ACTIVE', false, now(), now() from generate_series(1, $2) g`,
      [mesh.tenantId, users],
    );
    await db.query(`insert into "${schema}".user_roles (user_id, role_id, tenant_id, created_at) select 'usr_bench' || g, 'system:member', $1, now() from generate_series(1, $2) g`, [mesh.tenantId, users]);
    await db.query(`analyze "${schema}".users`);
  } finally {
    await db.end();
  }
}

/** A second person who may approve erasures: a user with a custom role, signed in for an access token. */
async function approverToken(mesh: BenchMesh): Promise<string> {
  const operator = (s: typeof UserService | typeof RoleService) => client(s, mesh.identityAddress, benchBootstrapToken, mesh.tenantId);
  const roles = operator(RoleService) as Client<typeof RoleService>;
  const usersClient = operator(UserService) as Client<typeof UserService>;
  const { role } = await roles.createRole({ name: "Privacy officer", description: "approves erasures", permissions: ["compliance.erasures.approve", "compliance.requests.read"] });
  const email = "privacy.officer@bench.example";
  const password = "Harbor-quartz-velvet-2026-orbit";
  const created = await usersClient.createUser({ email, displayName: "Privacy Officer", roleIds: [role!.id], returnInvitationToken: true });
  await usersClient.acceptInvitation({ invitationToken: created.invitationToken, password });
  const auth = createClient(AuthService, createGrpcTransport({ baseUrl: `http://${mesh.identityAddress}` }));
  const res = await auth.signIn({ tenantSlug: mesh.tenantSlug, email, password, device: "bench" });
  assert.equal(res.result.case, "tokens");
  return (res.result.value as { accessToken: string }).accessToken;
}

async function until(requests: Client<typeof DataSubjectRequestService>, id: string, state: RequestState): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = (await requests.getDataSubjectRequest({ id })).request!;
    if (r.state === state) return;
    if (r.state === RequestState.FAILED) throw new Error(`request failed: ${r.stateReason}`);
    if (Date.now() > deadline) throw new Error(`request still ${RequestState[r.state]} after 120 s`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Runs the compliance rows on a mesh of its own (tenancy, keys, identity, compliance). */
export async function complianceBenchmarks(): Promise<void> {
  // The figures are of the saga across every participant (COMPLIANCE_PARTICIPANTS' default: tenancy, identity, keys and audit), each in its own process.
  const mesh = await startBenchMesh({ identity: true, compliance: true, audit: true });
  try {
    await populate(mesh);
    const officer = client(DataSubjectRequestService, mesh.complianceAddress, benchBootstrapToken, mesh.tenantId) as Client<typeof DataSubjectRequestService>;
    const approver = client(DataSubjectRequestService, mesh.complianceAddress, await approverToken(mesh)) as Client<typeof DataSubjectRequestService>;
    const exports: number[] = [];
    const erasures: number[] = [];
    let bundleBytes = 0;
    for (let round = 0; round < rounds; round++) {
      const t0 = performance.now();
      const e = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: `usr_bench${100 + round}` })).request!;
      await officer.verifySubjectIdentity({ id: e.id, method: "bench" });
      await until(officer, e.id, RequestState.COMPLETED);
      bundleBytes = 0;
      for await (const m of officer.downloadExport({ id: e.id })) if (m.part.case === "chunk") bundleBytes += m.part.value.length;
      exports.push(performance.now() - t0);
      const t1 = performance.now();
      const x = (await officer.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: `usr_bench${200 + round}` })).request!;
      await officer.verifySubjectIdentity({ id: x.id, method: "bench" });
      await approver.approveErasure({ id: x.id });
      await until(officer, x.id, RequestState.COMPLETED);
      erasures.push(performance.now() - t1);
    }
    const fmt = (xs: number[]) => `median ${(median(xs) / 1000).toFixed(2)} s, worst ${(Math.max(...xs) / 1000).toFixed(2)} s over ${xs.length} rounds (aim < 10 s)`;
    console.log(`compliance: export of one subject in a tenant of ${users} users, request to downloaded bundle (${bundleBytes} bytes): ${fmt(exports)}`);
    console.log(`compliance: erasure of one subject in a tenant of ${users} users, request to completed across 5 services: ${fmt(erasures)}`);
  } finally {
    await mesh.close();
  }
}
