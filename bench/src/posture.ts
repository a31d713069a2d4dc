/**
 * The posture report of a tenant of 10,000 users, with tenancy, keys,
 * identity and compliance each in its own process (bench/src/mesh.ts). The
 * tenant's users (a tenth of them admins, nine in ten with MFA) and half of
 * them with a session are written straight into identity's schema, as a
 * migration would; the rows then measure, in alternating rounds:
 *
 * (p1) the baseline: paging all 10,000 users out of identity's ListUsers
 *      (500 a page), the bulk of what an evaluation must read;
 * (p2) EvaluatePosture: every source read through the services' RPCs, eight
 *      controls evaluated, the report stored;
 * (p3) GetPostureReport: the stored report;
 * (p4) ExportPostureReport as HTML.
 *
 * It prints the median of each and the median per-round ratio p2/p1.
 */
import { create } from "@bufbuild/protobuf";
import { ListUsersRequestSchema, PostureService, ReportFormat, UserService } from "@bulwark/contracts";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { adminUrl, benchBootstrapToken, startBenchMesh } from "./mesh.js";

const users = Number(process.env["BENCH_POSTURE_USERS"] ?? 10_000);
const rounds = Math.max(1, Number(process.env["BENCH_ROUNDS"] ?? 5));

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Writes the tenant's users, roles and sessions in bulk. */
async function seed(schemas: { identity: string }, tenantId: string): Promise<void> {
  const db = new pg.Client({ connectionString: adminUrl });
  await db.connect();
  try {
    const i = `"${schemas.identity}"`;
    await db.query(
      `insert into ${i}.users (id, tenant_id, email, display_name, state, password_hash, mfa_enrolled, created_at, updated_at, last_sign_in_at, last_activity_at)
       select 'usr_bench' || lpad(g::text, 6, '0'), $1, 'user' || g || '@bench.test', 'Bench User ' || g, 'ACTIVE', null, (g % 10) <> 3,
              now() - (g % 400) * interval '1 day', now(), now() - (g % 200) * interval '1 day', now() - (g % 150) * interval '1 day'
         from generate_series(1, $2::int) g`,
      [tenantId, users],
    );
    await db.query(
      `insert into ${i}.user_roles (user_id, role_id, tenant_id, created_at)
       select 'usr_bench' || lpad(g::text, 6, '0'), case when g = 1 then 'system:owner' when g % 10 = 0 then 'system:admin' else 'system:member' end, $1, now()
         from generate_series(1, $2::int) g`,
      [tenantId, users],
    );
    await db.query(
      `insert into ${i}.sessions (id, tenant_id, user_id, device, created_at, auth_time, last_seen_at, idle_timeout_s, expires_at)
       select 'ses_bench' || lpad(g::text, 6, '0'), $1, 'usr_bench' || lpad(g::text, 6, '0'), 'laptop', now() - (g % 45) * interval '1 day', now(), now(), 86400 * 60, now() + interval '30 days'
         from generate_series(1, $2::int, 2) g`,
      [tenantId, users],
    );
  } finally {
    await db.end();
  }
}

/** Runs the posture rows and prints them. */
export async function postureBenchmarks(): Promise<void> {
  const mesh = await startBenchMesh({ identity: true, compliance: true, audit: true, env: { KEYS_API_KEY_PEPPER: "bench-api-key-pepper-0123456789abcdef-0123" } });
  try {
    await seed({ identity: mesh.schemas["identity"]! }, mesh.tenantId);
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${benchBootstrapToken}`);
      req.header.set("bulwark-tenant", mesh.tenantId);
      return next(req);
    };
    const identity = createClient(UserService, createGrpcTransport({ baseUrl: `http://${mesh.identityAddress}`, interceptors: [auth] }));
    const posture = createClient(PostureService, createGrpcTransport({ baseUrl: `http://${mesh.complianceAddress}`, interceptors: [auth] }));
    const listAll = async (): Promise<number> => {
      let n = 0;
      let pageToken = "";
      do {
        const page = await identity.listUsers(create(ListUsersRequestSchema, { pageSize: 500, pageToken }));
        n += page.users.length;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return n;
    };
    // Warm-up: JIT, pools and caches of every process.
    const listed = await listAll();
    const first = await posture.evaluatePosture({});
    const baseline: number[] = [];
    const evaluate: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const b = await timed(listAll);
      const e = await timed(() => posture.evaluatePosture({}));
      baseline.push(b);
      evaluate.push(e);
      ratios.push(e / b);
    }
    const get: number[] = [];
    const html: number[] = [];
    let bytes = 0;
    for (let r = 0; r < rounds; r++) {
      get.push(await timed(() => posture.getPostureReport({})));
      html.push(
        await timed(async () => {
          bytes = (await posture.exportPostureReport({ format: ReportFormat.HTML })).content.length;
        }),
      );
    }
    const report = first.report!;
    console.log(`Posture report of a tenant of ${listed} users (${report.controls.length} controls, ${report.passed} pass, audit checkpoint ${report.auditCheckpoint?.available === true ? `at size ${report.auditCheckpoint.treeSize}` : "unavailable"}; median of ${rounds} alternating rounds)`);
    console.log(`  (p1) ListUsers, all ${listed} users in pages of 500 (baseline)   ${median(baseline).toFixed(0)} ms`);
    console.log(`  (p2) EvaluatePosture (every source, 8 controls, stored)          ${median(evaluate).toFixed(0)} ms`);
    console.log(`  (p3) GetPostureReport (stored report)                            ${median(get).toFixed(1)} ms`);
    console.log(`  (p4) ExportPostureReport, HTML (${(bytes / 1024).toFixed(0)} KiB)                        ${median(html).toFixed(1)} ms`);
    console.log(`  p2/p1 = ${median(ratios).toFixed(2)} (median of per-round ratios)`);
  } finally {
    await mesh.close();
  }
}
