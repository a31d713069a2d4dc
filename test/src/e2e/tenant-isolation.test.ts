/**
 * Tenant isolation end to end: row-level security answers for a query that
 * forgets its tenant filter, a tenant principal cannot reach another
 * tenant's data through the API, cannot pick another tenant by header, and
 * an operator can act inside a tenant by header.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Plan, Region, TenancyService } from "@bulwark/contracts";
import { runAsPlatform, runInTenant } from "@bulwark/core";
import { streamOf } from "@bulwark/server";
import { TenantEntity, tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, eventually, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { collectEvents, expectCode, type Collector } from "./support-e2e.js";

const tenantPermissions = ["tenancy.tenants.read", "tenancy.tenants.update", "tenancy.policies.read", "tenancy.policies.update"];

describe("tenant isolation", () => {
  let svc: Started | undefined;
  let events: Collector | undefined;
  let tenantA = "";
  let tenantB = "";
  let tokenA = "";

  before(async () => {
    svc = await startTestService(tenancyModule);
    const { db, nc, js } = svc.running.deps;
    events = await collectEvents({ db, nc, js, stream: streamOf(svc.prefix, "tenancy").name, source: "tenancy", subjectPrefix: svc.prefix, durable: "e2e_isolation", filterSubjects: [`${svc.prefix}.tenancy.tenant.>`] });
    const ops = clientFor(TenancyService, svc.baseUrl, bootstrapToken);
    tenantA = (await ops.createTenant({ slug: uniqueSlug("a"), displayName: "Tenant A", region: Region.EU })).tenant!.id;
    tenantB = (await ops.createTenant({ slug: uniqueSlug("b"), displayName: "Tenant B", region: Region.US })).tenant!.id;
    tokenA = svc.issueToken({ id: "usr_a1", kind: "user", tenantId: tenantA, permissions: new Set(tenantPermissions) });
  });

  after(async () => {
    await events?.stop().catch(() => undefined);
    await svc?.stop();
  });

  test("a query without a tenant filter sees only the current tenant's rows (ORM and raw SQL)", async () => {
    const { db } = svc!.running.deps;
    const viaOrm = await runInTenant(tenantA, () => db.transaction((em) => em.find(TenantEntity, {})));
    assert.deepEqual(
      viaOrm.map((t) => t.id),
      [tenantA],
    );
    const viaSql = (await runInTenant(tenantA, () => db.transaction((em) => em.execute("select * from tenants")))) as { id: string }[];
    assert.deepEqual(
      viaSql.map((r) => r.id),
      [tenantA],
    );
    const policies = (await runInTenant(tenantB, () => db.transaction((em) => em.execute("select tenant_id from security_policies")))) as { tenant_id: string }[];
    assert.deepEqual(
      policies.map((r) => r.tenant_id),
      [tenantB],
    );
    // With no scope at all, RLS shows nothing (the safe failure).
    const unscoped = (await db.transaction((em) => em.execute("select * from tenants"))) as unknown[];
    assert.equal(unscoped.length, 0);
    // The explicit platform scope sees both (so the rows above really exist).
    const all = (await runAsPlatform("e2e: check both tenants exist", () => db.transaction((em) => em.execute("select id from tenants")))) as { id: string }[];
    assert.ok(all.some((r) => r.id === tenantA) && all.some((r) => r.id === tenantB));
  });

  test("a write for another tenant's row is refused by the database, and an unfiltered update touches only the current tenant", async () => {
    const { db } = svc!.running.deps;
    await assert.rejects(
      runInTenant(tenantA, () =>
        db.transaction((em) =>
          em.execute(
            "insert into tenants (id, tenant_id, slug, display_name, region, plan, state, created_at, updated_at) values (?, ?, ?, 'x', 'eu', 'free', 'active', now(), now())",
            ["ten_forged", "ten_forged", uniqueSlug("f")],
          ),
        ),
      ),
      /row-level security|violates/i,
    );
    // An UPDATE without a WHERE clause, rolled back so the test leaves nothing behind.
    const touched = await runInTenant(tenantA, () =>
      db
        .transaction(async (em) => {
          const rows = (await em.execute("update tenants set state_reason = 'probe' returning id")) as { id: string }[];
          throw Object.assign(new Error("rollback"), { rows });
        })
        .catch((err: { rows?: { id: string }[] }) => err.rows ?? []),
    );
    assert.deepEqual(
      touched.map((r) => r.id),
      [tenantA],
    );
  });

  test("tenant A's principal gets NOT_FOUND for tenant B's resources and B is unchanged", async () => {
    const asA = clientFor(TenancyService, svc!.baseUrl, tokenA);
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    const before = (await ops.getTenant({ tenantId: tenantB })).tenant!;

    // Its own tenant works.
    assert.equal((await asA.getTenant({ tenantId: tenantA })).tenant?.id, tenantA);
    assert.equal((await asA.getSecurityPolicy({ tenantId: tenantA })).policy?.tenantId, tenantA);

    await expectCode(asA.getTenant({ tenantId: tenantB }), Code.NotFound);
    await expectCode(asA.getSecurityPolicy({ tenantId: tenantB }), Code.NotFound);
    await expectCode(asA.updateTenant({ tenantId: tenantB, displayName: "pwned", plan: Plan.ENTERPRISE, updateMask: create(FieldMaskSchema, { paths: ["display_name", "plan"] }) }), Code.NotFound);
    // The grpc-web and connect paths enforce the same.
    await expectCode(clientFor(TenancyService, svc!.baseUrl, tokenA, "connect").getTenant({ tenantId: tenantB }), Code.NotFound);
    await expectCode(clientFor(TenancyService, svc!.baseUrl, tokenA, "grpcweb").getTenant({ tenantId: tenantB }), Code.NotFound);

    const afterwards = (await ops.getTenant({ tenantId: tenantB })).tenant!;
    assert.equal(afterwards.displayName, "Tenant B");
    assert.equal(afterwards.plan, before.plan);
    assert.deepEqual(afterwards.updateTime, before.updateTime);
    assert.equal(events!.of("updated", tenantB).length, 0, "no tenant.updated event for B");
  });

  test("a bulwark-tenant header naming another tenant than the credential is refused", async () => {
    for (const protocol of ["grpc", "connect", "grpcweb"] as const) {
      const forged = clientFor(TenancyService, svc!.baseUrl, tokenA, protocol, { "bulwark-tenant": tenantB });
      await expectCode(forged.getTenant({ tenantId: tenantB }), Code.PermissionDenied);
      await expectCode(forged.getTenant({ tenantId: tenantA }), Code.PermissionDenied);
    }
    // Naming its own tenant is fine.
    const own = clientFor(TenancyService, svc!.baseUrl, tokenA, "grpc", { "bulwark-tenant": tenantA });
    assert.equal((await own.getTenant({ tenantId: tenantA })).tenant?.id, tenantA);
  });

  test("an operator with a bulwark-tenant header acts in that tenant", async () => {
    const opsInB = clientFor(TenancyService, svc!.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantB, "x-request-id": "req_e2e_operator_in_b" });
    assert.equal((await opsInB.getTenant({ tenantId: tenantB })).tenant?.id, tenantB);
    assert.equal((await opsInB.getSecurityPolicy({ tenantId: tenantB })).policy?.tenantId, tenantB);
    const updated = await opsInB.updateTenant({ tenantId: tenantB, displayName: "Tenant B (renamed by operator)", updateMask: create(FieldMaskSchema, { paths: ["display_name"] }) });
    assert.equal(updated.tenant?.displayName, "Tenant B (renamed by operator)");
    // The change's event is scoped to B and attributed to the operator.
    await eventually(() => events!.of("updated", tenantB).length > 0, 5000);
    const [ev] = events!.of("updated", tenantB);
    assert.equal(ev!.envelope.tenantId, tenantB);
    assert.equal(ev!.envelope.actor?.id, "bootstrap");
    assert.equal(ev!.envelope.requestId, "req_e2e_operator_in_b");
    assert.equal(ev!.ctx?.tenantId, tenantB);
  });
});
