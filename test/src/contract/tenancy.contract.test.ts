/**
 * The contract of bulwark.tenancy.v1.TenancyService as its callers rely on
 * it: every RPC through the generated typed client against a real server
 * (real Postgres, real NATS), its success case and each error code its proto
 * comment documents. A breaking change to the service fails here first.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, type Client } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  MfaRequirement,
  Plan,
  Region,
  ResolveTenantResponseSchema,
  TenancyService,
  TenantState,
  type Tenant,
} from "@bulwark/contracts";
import type { Principal } from "@bulwark/core";
import { tenancyModule } from "@bulwark/tenancy";
import { adminQuery, bootstrapToken, clientFor, eventually, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { day, refusedWith, secondsOf } from "./support-assert.js";

type Tenancy = Client<typeof TenancyService>;

/** Every permission a tenant administrator can hold on tenancy. */
const tenantAdminPermissions = ["tenancy.tenants.read", "tenancy.tenants.update", "tenancy.tenants.close", "tenancy.policies.read", "tenancy.policies.update"];
/** The platform-only permissions, which a tenant principal holding them still may not use. */
const platformPermissions = ["tenancy.tenants.create", "tenancy.tenants.list", "tenancy.tenants.suspend", "tenancy.tenants.reactivate"];

const missingId = "ten_0000000000000000000000000";
const wrongToken = "not-a-token-anyone-issued-0123456789";

let svc: Started;
let ops: Tenancy;
let anon: Tenancy;
let forged: Tenancy;
/** Two active tenants that no test suspends or closes (their principals must stay admitted). */
let tenantA: Tenant;
let tenantB: Tenant;
/** Tenant A's principals: an administrator holding every permission, a reader, and one holding nothing. */
let adminA: Tenancy;
let readerA: Tenancy;
let nobodyA: Tenancy;

function as(principal: Principal, extra: Record<string, string> = {}): Tenancy {
  return clientFor(TenancyService, svc.baseUrl, svc.issueToken(principal), "grpc", extra);
}

function tenantUser(tenantId: string, permissions: readonly string[], extra: Record<string, string> = {}): Tenancy {
  return as({ id: `usr_${uniqueSlug("u").replace(/-/g, "")}`, kind: "user", tenantId, permissions: new Set(permissions) }, extra);
}

async function newTenant(init: { region?: Region; plan?: Plan; displayName?: string } = {}): Promise<Tenant> {
  const { tenant } = await ops.createTenant({ slug: uniqueSlug("c"), displayName: init.displayName ?? "Contract Co", region: init.region ?? Region.EU, plan: init.plan ?? Plan.UNSPECIFIED });
  assert.ok(tenant !== undefined, "CreateTenant returned no tenant");
  return tenant;
}

async function closedTenant(): Promise<Tenant> {
  const t = await newTenant();
  await ops.closeTenant({ tenantId: t.id, reason: "customer left" });
  return t;
}

async function stateOf(tenantId: string): Promise<TenantState | undefined> {
  return (await ops.getTenant({ tenantId })).tenant?.state;
}

before(async () => {
  svc = await startTestService(tenancyModule);
  ops = clientFor(TenancyService, svc.baseUrl, bootstrapToken);
  anon = clientFor(TenancyService, svc.baseUrl);
  forged = clientFor(TenancyService, svc.baseUrl, wrongToken);
  tenantA = await newTenant({ displayName: "Tenant A" });
  tenantB = await newTenant({ displayName: "Tenant B" });
  adminA = tenantUser(tenantA.id, [...tenantAdminPermissions, ...platformPermissions]);
  readerA = tenantUser(tenantA.id, ["tenancy.tenants.read", "tenancy.policies.read"]);
  nobodyA = tenantUser(tenantA.id, []);
});

after(async () => {
  await svc?.stop();
});

describe("CreateTenant", () => {
  test("CreateTenant creates an active FREE tenant with a ten_ id, as stored", async () => {
    const slug = uniqueSlug("new");
    const before = Date.now();
    const { tenant } = await ops.createTenant({ slug, displayName: "Acme Ltd", region: Region.US });
    assert.ok(tenant !== undefined);
    assert.match(tenant.id, /^ten_[A-Za-z0-9]+$/);
    assert.equal(tenant.slug, slug);
    assert.equal(tenant.displayName, "Acme Ltd");
    assert.equal(tenant.region, Region.US);
    assert.equal(tenant.plan, Plan.FREE);
    assert.equal(tenant.state, TenantState.ACTIVE);
    assert.equal(tenant.stateReason, "");
    assert.ok(tenant.createTime !== undefined && tenant.updateTime !== undefined);
    assert.ok(Math.abs(timestampDate(tenant.createTime).getTime() - before) < 60_000, "create_time is now");
    assert.deepEqual(tenant.updateTime, tenant.createTime);
    assert.equal(tenant.closeTime, undefined);
    assert.equal(tenant.purgeTime, undefined);
    assert.deepEqual((await ops.getTenant({ tenantId: tenant.id })).tenant, tenant, "GetTenant returns what CreateTenant returned");
  });

  test("CreateTenant keeps the plan it is given", async () => {
    assert.equal((await newTenant({ plan: Plan.TEAM })).plan, Plan.TEAM);
  });

  test("CreateTenant gives every tenant a distinct id", async () => {
    const [x, y] = await Promise.all([newTenant(), newTenant()]);
    assert.notEqual(x.id, y.id);
  });

  test("CreateTenant refuses a slug that is not lower-case letters, digits and hyphens with INVALID_ARGUMENT naming slug", async () => {
    await refusedWith(ops.createTenant({ slug: "A_B", displayName: "X", region: Region.EU }), Code.InvalidArgument, "slug");
    await refusedWith(ops.createTenant({ slug: "ab-", displayName: "X", region: Region.EU }), Code.InvalidArgument, "slug");
  });

  test("CreateTenant refuses a slug shorter than 3 or longer than 63 characters with INVALID_ARGUMENT naming slug", async () => {
    await refusedWith(ops.createTenant({ slug: "ab", displayName: "X", region: Region.EU }), Code.InvalidArgument, "slug");
    await refusedWith(ops.createTenant({ slug: "a".repeat(64), displayName: "X", region: Region.EU }), Code.InvalidArgument, "slug");
    await refusedWith(ops.createTenant({ slug: "", displayName: "X", region: Region.EU }), Code.InvalidArgument, "slug");
  });

  test("CreateTenant refuses a missing or too long display_name with INVALID_ARGUMENT naming display_name", async () => {
    await refusedWith(ops.createTenant({ slug: uniqueSlug(), displayName: "", region: Region.EU }), Code.InvalidArgument, "display_name");
    await refusedWith(ops.createTenant({ slug: uniqueSlug(), displayName: "x".repeat(201), region: Region.EU }), Code.InvalidArgument, "display_name");
  });

  test("CreateTenant refuses an unspecified or undefined region with INVALID_ARGUMENT naming region", async () => {
    await refusedWith(ops.createTenant({ slug: uniqueSlug(), displayName: "X", region: Region.UNSPECIFIED }), Code.InvalidArgument, "region");
    await refusedWith(ops.createTenant({ slug: uniqueSlug(), displayName: "X", region: 99 as Region }), Code.InvalidArgument, "region");
  });

  test("CreateTenant refuses an undefined plan with INVALID_ARGUMENT naming plan", async () => {
    await refusedWith(ops.createTenant({ slug: uniqueSlug(), displayName: "X", region: Region.EU, plan: 42 as Plan }), Code.InvalidArgument, "plan");
  });

  test("CreateTenant refuses a taken slug with ALREADY_EXISTS", async () => {
    await refusedWith(ops.createTenant({ slug: tenantA.slug, displayName: "Copycat", region: Region.US }), Code.AlreadyExists, tenantA.slug);
  });

  test("CreateTenant gives a slug to exactly one of two concurrent callers; the other gets ALREADY_EXISTS", async () => {
    const slug = uniqueSlug("race");
    const results = await Promise.allSettled([0, 1, 2].map((i) => ops.createTenant({ slug, displayName: `Racer ${i}`, region: Region.EU })));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) if (r.status === "rejected") await refusedWith(Promise.reject(r.reason), Code.AlreadyExists);
  });

  test("CreateTenant refuses the slug of a closing tenant with ALREADY_EXISTS", async () => {
    const closing = await closedTenant();
    await refusedWith(ops.createTenant({ slug: closing.slug, displayName: "Successor", region: Region.EU }), Code.AlreadyExists);
  });

  test("CreateTenant refuses a call without a credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.createTenant({ slug: uniqueSlug(), displayName: "X", region: Region.EU }), Code.Unauthenticated);
  });

  test("CreateTenant refuses a credential nobody issued with UNAUTHENTICATED", async () => {
    await refusedWith(forged.createTenant({ slug: uniqueSlug(), displayName: "X", region: Region.EU }), Code.Unauthenticated);
  });

  test("CreateTenant refuses a tenant principal with PERMISSION_DENIED even if it holds tenancy.tenants.create", async () => {
    await refusedWith(adminA.createTenant({ slug: uniqueSlug(), displayName: "X", region: Region.EU }), Code.PermissionDenied);
  });

  test("CreateTenant refuses an operator lacking tenancy.tenants.create with PERMISSION_DENIED", async () => {
    const reader = as({ id: "opr_reader", kind: "operator", permissions: new Set(["tenancy.tenants.read"]) });
    await refusedWith(reader.createTenant({ slug: uniqueSlug(), displayName: "X", region: Region.EU }), Code.PermissionDenied, "tenancy.tenants.create");
  });
});

describe("GetTenant", () => {
  test("GetTenant returns a tenant to an operator", async () => {
    const { tenant } = await ops.getTenant({ tenantId: tenantA.id });
    assert.equal(tenant?.id, tenantA.id);
    assert.equal(tenant?.slug, tenantA.slug);
    assert.equal(tenant?.region, Region.EU);
  });

  test("GetTenant returns its own tenant to a tenant principal holding tenancy.tenants.read", async () => {
    const { tenant } = await readerA.getTenant({ tenantId: tenantA.id });
    assert.equal(tenant?.id, tenantA.id);
  });

  test("GetTenant admits a tenant principal whose bulwark-tenant header names its own tenant", async () => {
    const client = tenantUser(tenantA.id, ["tenancy.tenants.read"], { "bulwark-tenant": tenantA.id });
    assert.equal((await client.getTenant({ tenantId: tenantA.id })).tenant?.id, tenantA.id);
  });

  test("GetTenant refuses a tenant_id without the ten_ prefix with INVALID_ARGUMENT naming tenant_id", async () => {
    await refusedWith(ops.getTenant({ tenantId: "usr_123" }), Code.InvalidArgument, "tenant_id");
    await refusedWith(ops.getTenant({ tenantId: "" }), Code.InvalidArgument, "tenant_id");
    await refusedWith(ops.getTenant({ tenantId: `ten_${"x".repeat(61)}` }), Code.InvalidArgument, "tenant_id");
  });

  test("GetTenant answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.getTenant({ tenantId: missingId }), Code.NotFound);
  });

  test("GetTenant answers NOT_FOUND, not PERMISSION_DENIED, to a tenant principal asking for another tenant, exactly as for a missing one", async () => {
    const other = await refusedWith(readerA.getTenant({ tenantId: tenantB.id }), Code.NotFound);
    const missing = await refusedWith(readerA.getTenant({ tenantId: missingId }), Code.NotFound);
    assert.equal(other.rawMessage, missing.rawMessage, "another tenant's id must be indistinguishable from a missing one");
    assert.ok(!other.rawMessage.includes(tenantB.id));
  });

  test("GetTenant refuses a call without a credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.getTenant({ tenantId: tenantA.id }), Code.Unauthenticated);
  });

  test("GetTenant refuses a credential nobody issued with UNAUTHENTICATED", async () => {
    await refusedWith(forged.getTenant({ tenantId: tenantA.id }), Code.Unauthenticated);
  });

  test("GetTenant refuses a tenant principal lacking tenancy.tenants.read with PERMISSION_DENIED", async () => {
    await refusedWith(nobodyA.getTenant({ tenantId: tenantA.id }), Code.PermissionDenied, "tenancy.tenants.read");
  });

  test("GetTenant refuses a tenant principal whose bulwark-tenant header names another tenant with PERMISSION_DENIED", async () => {
    const client = tenantUser(tenantA.id, ["tenancy.tenants.read"], { "bulwark-tenant": tenantB.id });
    await refusedWith(client.getTenant({ tenantId: tenantB.id }), Code.PermissionDenied);
    await refusedWith(client.getTenant({ tenantId: tenantA.id }), Code.PermissionDenied);
  });
});

describe("ResolveTenant", () => {
  test("ResolveTenant maps a slug to the tenant id without any credential", async () => {
    const resolved = await anon.resolveTenant({ slug: tenantA.slug });
    assert.equal(resolved.tenantId, tenantA.id);
    assert.equal(resolved.active, true);
  });

  test("ResolveTenant reveals nothing but the tenant id and whether it is active", () => {
    assert.deepEqual(ResolveTenantResponseSchema.fields.map((f) => f.name).sort(), ["active", "tenant_id"]);
  });

  test("ResolveTenant says a suspended or closing tenant is not active", async () => {
    const s = await newTenant();
    await ops.suspendTenant({ tenantId: s.id, reason: "unpaid" });
    assert.deepEqual(await anon.resolveTenant({ slug: s.slug }).then((r) => [r.tenantId, r.active]), [s.id, false]);
    const c = await closedTenant();
    assert.deepEqual(await anon.resolveTenant({ slug: c.slug }).then((r) => [r.tenantId, r.active]), [c.id, false]);
  });

  test("ResolveTenant answers NOT_FOUND for a slug no tenant has", async () => {
    await refusedWith(anon.resolveTenant({ slug: uniqueSlug("nobody") }), Code.NotFound);
  });

  test("ResolveTenant refuses a malformed slug with INVALID_ARGUMENT naming slug", async () => {
    await refusedWith(anon.resolveTenant({ slug: "A_B" }), Code.InvalidArgument, "slug");
    await refusedWith(anon.resolveTenant({ slug: "" }), Code.InvalidArgument, "slug");
  });
});

describe("ListTenants", () => {
  test("ListTenants pages through every tenant newest first, without duplicates, and filters by region and state", async () => {
    const created: Tenant[] = [];
    for (let i = 0; i < 5; i++) created.push(await newTenant({ region: Region.AU, displayName: `AU ${i}` }));
    const seen: Tenant[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await ops.listTenants({ pageSize: 2, pageToken, region: Region.AU });
      assert.ok(page.tenants.length <= 2, "a page holds at most page_size tenants");
      seen.push(...page.tenants);
      pageToken = page.nextPageToken;
      pages++;
      assert.ok(pages < 20, "pagination does not end");
    } while (pageToken !== "");
    assert.equal(pages, 3);
    const ids = seen.map((t) => t.id);
    assert.equal(new Set(ids).size, ids.length, "no tenant appears twice");
    assert.deepEqual(new Set(ids), new Set(created.map((t) => t.id)));
    assert.ok(seen.every((t) => t.region === Region.AU));
    for (let i = 1; i < seen.length; i++) {
      const [prev, cur] = [timestampDate(seen[i - 1]!.createTime!).getTime(), timestampDate(seen[i]!.createTime!).getTime()];
      assert.ok(prev >= cur, "newest first");
    }

    await ops.suspendTenant({ tenantId: created[2]!.id, reason: "filter check" });
    const suspended = await ops.listTenants({ region: Region.AU, state: TenantState.SUSPENDED });
    assert.deepEqual(suspended.tenants.map((t) => t.id), [created[2]!.id]);
    assert.equal(suspended.nextPageToken, "");
    const activeAu = await ops.listTenants({ region: Region.AU, state: TenantState.ACTIVE });
    assert.equal(activeAu.tenants.length, 4);
  });

  test("ListTenants pages through all tenants unfiltered with no duplicates and an empty token on the last page", async () => {
    const ids: string[] = [];
    let pageToken = "";
    do {
      const page = await ops.listTenants({ pageSize: 3, pageToken });
      ids.push(...page.tenants.map((t) => t.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && ids.length < 1000);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.includes(tenantA.id) && ids.includes(tenantB.id));
    const all = await ops.listTenants({});
    assert.equal(all.tenants.length, Math.min(ids.length, 50), "page_size 0 means 50");
    assert.equal(all.nextPageToken === "", ids.length <= 50);
    assert.deepEqual(all.tenants.map((t) => t.id), ids.slice(0, 50), "the same order whatever the page size");
  });

  test("ListTenants refuses a garbage page_token with INVALID_ARGUMENT naming page_token", async () => {
    await refusedWith(ops.listTenants({ pageToken: "garbage!!" }), Code.InvalidArgument, "page_token");
    await refusedWith(ops.listTenants({ pageToken: Buffer.from(JSON.stringify({ t: "x", i: 1 })).toString("base64url") }), Code.InvalidArgument, "page_token");
  });

  test("ListTenants refuses a page_token issued for other filters with INVALID_ARGUMENT naming page_token", async () => {
    const first = await ops.listTenants({ pageSize: 1 });
    assert.notEqual(first.nextPageToken, "");
    await refusedWith(ops.listTenants({ pageSize: 1, pageToken: first.nextPageToken, region: Region.US }), Code.InvalidArgument, "page_token");
  });

  test("ListTenants refuses a bad page_size or filter with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(ops.listTenants({ pageSize: 501 }), Code.InvalidArgument, "page_size");
    await refusedWith(ops.listTenants({ pageSize: -1 }), Code.InvalidArgument, "page_size");
    await refusedWith(ops.listTenants({ state: 9 as TenantState }), Code.InvalidArgument, "state");
    await refusedWith(ops.listTenants({ region: 9 as Region }), Code.InvalidArgument, "region");
  });

  test("ListTenants refuses a call without a credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.listTenants({}), Code.Unauthenticated);
    await refusedWith(forged.listTenants({}), Code.Unauthenticated);
  });

  test("ListTenants refuses a tenant principal with PERMISSION_DENIED even if it holds tenancy.tenants.list", async () => {
    await refusedWith(adminA.listTenants({}), Code.PermissionDenied);
  });
});

describe("UpdateTenant", () => {
  test("UpdateTenant changes only the fields named in update_mask", async () => {
    const t = await newTenant({ displayName: "Before" });
    const renamed = (await ops.updateTenant({ tenantId: t.id, displayName: "After", plan: Plan.ENTERPRISE, updateMask: { paths: ["display_name"] } })).tenant;
    assert.equal(renamed?.displayName, "After");
    assert.equal(renamed?.plan, Plan.FREE, "plan is not in the mask");
    assert.ok(timestampDate(renamed!.updateTime!) >= timestampDate(t.updateTime!));
    const upgraded = (await ops.updateTenant({ tenantId: t.id, displayName: "Ignored", plan: Plan.BUSINESS, updateMask: { paths: ["plan"] } })).tenant;
    assert.equal(upgraded?.plan, Plan.BUSINESS);
    assert.equal(upgraded?.displayName, "After");
    assert.equal(upgraded?.slug, t.slug);
    assert.equal(upgraded?.region, t.region);
    assert.deepEqual((await ops.getTenant({ tenantId: t.id })).tenant, upgraded);
  });

  test("UpdateTenant lets a tenant principal holding tenancy.tenants.update rename its own tenant", async () => {
    const { tenant } = await adminA.updateTenant({ tenantId: tenantA.id, displayName: "Tenant A, renamed", updateMask: { paths: ["display_name"] } });
    assert.equal(tenant?.displayName, "Tenant A, renamed");
  });

  test("UpdateTenant refuses a path that is not display_name or plan with INVALID_ARGUMENT naming update_mask", async () => {
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, updateMask: { paths: ["region"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, updateMask: { paths: ["slug"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, updateMask: { paths: ["Not A Path"] } }), Code.InvalidArgument, "update_mask");
  });

  test("UpdateTenant refuses a missing or empty update_mask with INVALID_ARGUMENT naming update_mask", async () => {
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, displayName: "X" }), Code.InvalidArgument, "update_mask");
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, displayName: "X", updateMask: { paths: [] } }), Code.InvalidArgument, "update_mask");
  });

  test("UpdateTenant refuses a malformed value with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, displayName: "", updateMask: { paths: ["display_name"] } }), Code.InvalidArgument, "display_name");
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, displayName: "x".repeat(201), updateMask: { paths: ["display_name"] } }), Code.InvalidArgument, "display_name");
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, plan: Plan.UNSPECIFIED, updateMask: { paths: ["plan"] } }), Code.InvalidArgument, "plan");
    await refusedWith(ops.updateTenant({ tenantId: tenantA.id, plan: 77 as Plan, updateMask: { paths: ["plan"] } }), Code.InvalidArgument, "plan");
    await refusedWith(ops.updateTenant({ tenantId: "tenant", displayName: "X", updateMask: { paths: ["display_name"] } }), Code.InvalidArgument, "tenant_id");
  });

  test("UpdateTenant answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.updateTenant({ tenantId: missingId, displayName: "X", updateMask: { paths: ["display_name"] } }), Code.NotFound);
  });

  test("UpdateTenant answers NOT_FOUND to a tenant principal naming another tenant, and changes nothing there", async () => {
    await refusedWith(adminA.updateTenant({ tenantId: tenantB.id, displayName: "Hijacked", updateMask: { paths: ["display_name"] } }), Code.NotFound);
    assert.equal((await ops.getTenant({ tenantId: tenantB.id })).tenant?.displayName, "Tenant B");
  });

  test("UpdateTenant refuses a closing tenant with FAILED_PRECONDITION", async () => {
    const t = await closedTenant();
    await refusedWith(ops.updateTenant({ tenantId: t.id, displayName: "Too late", updateMask: { paths: ["display_name"] } }), Code.FailedPrecondition);
  });

  test("UpdateTenant refuses a call without a valid credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.updateTenant({ tenantId: tenantA.id, displayName: "X", updateMask: { paths: ["display_name"] } }), Code.Unauthenticated);
    await refusedWith(forged.updateTenant({ tenantId: tenantA.id, displayName: "X", updateMask: { paths: ["display_name"] } }), Code.Unauthenticated);
  });

  test("UpdateTenant refuses a tenant principal lacking tenancy.tenants.update with PERMISSION_DENIED", async () => {
    await refusedWith(readerA.updateTenant({ tenantId: tenantA.id, displayName: "X", updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, "tenancy.tenants.update");
  });

  test("UpdateTenant refuses a tenant principal whose bulwark-tenant header names another tenant with PERMISSION_DENIED", async () => {
    const client = tenantUser(tenantA.id, tenantAdminPermissions, { "bulwark-tenant": tenantB.id });
    await refusedWith(client.updateTenant({ tenantId: tenantB.id, displayName: "Hijacked", updateMask: { paths: ["display_name"] } }), Code.PermissionDenied);
  });
});

describe("SuspendTenant", () => {
  test("SuspendTenant suspends a tenant and records the reason", async () => {
    const t = await newTenant();
    const { tenant } = await ops.suspendTenant({ tenantId: t.id, reason: "invoice overdue" });
    assert.equal(tenant?.state, TenantState.SUSPENDED);
    assert.equal(tenant?.stateReason, "invoice overdue");
    assert.equal(tenant?.closeTime, undefined);
    assert.ok(timestampDate(tenant!.updateTime!) >= timestampDate(t.updateTime!));
    assert.equal(await stateOf(t.id), TenantState.SUSPENDED);
  });

  test("SuspendTenant stops the calls of the tenant's own principals", async () => {
    const t = await newTenant();
    const member = tenantUser(t.id, ["tenancy.tenants.read"]);
    await member.getTenant({ tenantId: t.id });
    await ops.suspendTenant({ tenantId: t.id, reason: "abuse" });
    await eventually(async () => {
      try {
        await member.getTenant({ tenantId: t.id });
        return false;
      } catch (err) {
        return Code[(err as { code: Code }).code] === Code[Code.PermissionDenied];
      }
    });
  });

  test("SuspendTenant refuses a missing or too long reason with INVALID_ARGUMENT naming reason", async () => {
    await refusedWith(ops.suspendTenant({ tenantId: tenantA.id, reason: "" }), Code.InvalidArgument, "reason");
    await refusedWith(ops.suspendTenant({ tenantId: tenantA.id, reason: "r".repeat(501) }), Code.InvalidArgument, "reason");
    await refusedWith(ops.suspendTenant({ tenantId: "x", reason: "r" }), Code.InvalidArgument, "tenant_id");
    assert.equal(await stateOf(tenantA.id), TenantState.ACTIVE);
  });

  test("SuspendTenant answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.suspendTenant({ tenantId: missingId, reason: "r" }), Code.NotFound);
  });

  test("SuspendTenant refuses an already suspended tenant with FAILED_PRECONDITION", async () => {
    const t = await newTenant();
    await ops.suspendTenant({ tenantId: t.id, reason: "first" });
    await refusedWith(ops.suspendTenant({ tenantId: t.id, reason: "second" }), Code.FailedPrecondition);
  });

  test("SuspendTenant suspends once when called concurrently; the others get FAILED_PRECONDITION", async () => {
    const t = await newTenant();
    const results = await Promise.allSettled([0, 1, 2].map((i) => ops.suspendTenant({ tenantId: t.id, reason: `racer ${i}` })));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) if (r.status === "rejected") await refusedWith(Promise.reject(r.reason), Code.FailedPrecondition);
  });

  test("SuspendTenant refuses a closing tenant with FAILED_PRECONDITION", async () => {
    const t = await closedTenant();
    await refusedWith(ops.suspendTenant({ tenantId: t.id, reason: "r" }), Code.FailedPrecondition);
    assert.equal(await stateOf(t.id), TenantState.CLOSING);
  });

  test("SuspendTenant refuses a call without a valid credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.suspendTenant({ tenantId: tenantA.id, reason: "r" }), Code.Unauthenticated);
    await refusedWith(forged.suspendTenant({ tenantId: tenantA.id, reason: "r" }), Code.Unauthenticated);
  });

  test("SuspendTenant refuses a tenant principal with PERMISSION_DENIED even if it holds tenancy.tenants.suspend", async () => {
    await refusedWith(adminA.suspendTenant({ tenantId: tenantA.id, reason: "r" }), Code.PermissionDenied);
    await refusedWith(adminA.suspendTenant({ tenantId: tenantB.id, reason: "r" }), Code.PermissionDenied);
    assert.equal(await stateOf(tenantB.id), TenantState.ACTIVE);
  });
});

describe("ReactivateTenant", () => {
  test("ReactivateTenant lifts a suspension and clears the reason", async () => {
    const t = await newTenant();
    await ops.suspendTenant({ tenantId: t.id, reason: "unpaid" });
    const { tenant } = await ops.reactivateTenant({ tenantId: t.id });
    assert.equal(tenant?.state, TenantState.ACTIVE);
    assert.equal(tenant?.stateReason, "");
    assert.equal((await anon.resolveTenant({ slug: t.slug })).active, true);
  });

  test("ReactivateTenant cancels a closure and clears close_time and purge_time", async () => {
    const t = await closedTenant();
    const { tenant } = await ops.reactivateTenant({ tenantId: t.id });
    assert.equal(tenant?.state, TenantState.ACTIVE);
    assert.equal(tenant?.closeTime, undefined);
    assert.equal(tenant?.purgeTime, undefined);
    assert.equal(tenant?.stateReason, "");
  });

  test("ReactivateTenant refuses a closing tenant whose grace period has ended with FAILED_PRECONDITION", async () => {
    const t = await closedTenant();
    await adminQuery(`update "${svc.config.DATABASE_SCHEMA}".tenants set closed_at = now() - interval '31 days', purge_at = now() - interval '1 day' where id = $1`, [t.id]);
    await refusedWith(ops.reactivateTenant({ tenantId: t.id }), Code.FailedPrecondition);
    assert.equal(await stateOf(t.id), TenantState.CLOSING);
  });

  test("ReactivateTenant readmits the tenant's principals", async () => {
    const t = await newTenant();
    const member = tenantUser(t.id, ["tenancy.tenants.read"]);
    await ops.suspendTenant({ tenantId: t.id, reason: "pause" });
    await eventually(() => member.getTenant({ tenantId: t.id }).then(() => false, () => true));
    await ops.reactivateTenant({ tenantId: t.id });
    await eventually(() => member.getTenant({ tenantId: t.id }).then(() => true, () => false));
  });

  test("ReactivateTenant refuses an active tenant with FAILED_PRECONDITION", async () => {
    await refusedWith(ops.reactivateTenant({ tenantId: tenantA.id }), Code.FailedPrecondition);
  });

  test("ReactivateTenant refuses a malformed tenant_id with INVALID_ARGUMENT naming tenant_id", async () => {
    await refusedWith(ops.reactivateTenant({ tenantId: "" }), Code.InvalidArgument, "tenant_id");
  });

  test("ReactivateTenant answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.reactivateTenant({ tenantId: missingId }), Code.NotFound);
  });

  test("ReactivateTenant refuses a call without a valid credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.reactivateTenant({ tenantId: tenantA.id }), Code.Unauthenticated);
    await refusedWith(forged.reactivateTenant({ tenantId: tenantA.id }), Code.Unauthenticated);
  });

  test("ReactivateTenant refuses a tenant principal with PERMISSION_DENIED even if it holds tenancy.tenants.reactivate", async () => {
    const t = await newTenant();
    await ops.suspendTenant({ tenantId: t.id, reason: "r" });
    await refusedWith(adminA.reactivateTenant({ tenantId: t.id }), Code.PermissionDenied);
    assert.equal(await stateOf(t.id), TenantState.SUSPENDED);
  });
});

describe("CloseTenant", () => {
  test("CloseTenant marks the tenant closing with purge_time 30 days after close_time", async () => {
    const t = await newTenant();
    const before = Date.now();
    const { tenant } = await ops.closeTenant({ tenantId: t.id, reason: "contract ended" });
    assert.equal(tenant?.state, TenantState.CLOSING);
    assert.equal(tenant?.stateReason, "contract ended");
    assert.ok(tenant?.closeTime !== undefined && tenant.purgeTime !== undefined);
    const closeMs = timestampDate(tenant.closeTime).getTime();
    assert.ok(Math.abs(closeMs - before) < 60_000, "close_time is now");
    assert.equal(timestampDate(tenant.purgeTime).getTime() - closeMs, 30 * day * 1000);
    assert.deepEqual((await ops.getTenant({ tenantId: t.id })).tenant, tenant);
  });

  test("CloseTenant accepts an empty reason and closes a suspended tenant", async () => {
    const t = await newTenant();
    await ops.suspendTenant({ tenantId: t.id, reason: "unpaid" });
    const { tenant } = await ops.closeTenant({ tenantId: t.id });
    assert.equal(tenant?.state, TenantState.CLOSING);
  });

  test("CloseTenant lets a tenant principal holding tenancy.tenants.close close its own tenant, whose calls are then refused", async () => {
    const t = await newTenant();
    const owner = tenantUser(t.id, ["tenancy.tenants.close", "tenancy.tenants.read"]);
    const { tenant } = await owner.closeTenant({ tenantId: t.id, reason: "we are leaving" });
    assert.equal(tenant?.state, TenantState.CLOSING);
    await eventually(() => owner.getTenant({ tenantId: t.id }).then(() => false, (err: { code: Code }) => err.code === Code.PermissionDenied));
  });

  test("CloseTenant refuses an already closing tenant with FAILED_PRECONDITION", async () => {
    const t = await closedTenant();
    await refusedWith(ops.closeTenant({ tenantId: t.id, reason: "again" }), Code.FailedPrecondition);
  });

  test("CloseTenant refuses a malformed request with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(ops.closeTenant({ tenantId: tenantA.id, reason: "r".repeat(501) }), Code.InvalidArgument, "reason");
    await refusedWith(ops.closeTenant({ tenantId: "ten", reason: "r" }), Code.InvalidArgument, "tenant_id");
    assert.equal(await stateOf(tenantA.id), TenantState.ACTIVE);
  });

  test("CloseTenant answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.closeTenant({ tenantId: missingId }), Code.NotFound);
  });

  test("CloseTenant answers NOT_FOUND to a tenant principal naming another tenant, which stays active", async () => {
    await refusedWith(adminA.closeTenant({ tenantId: tenantB.id, reason: "hostile" }), Code.NotFound);
    assert.equal(await stateOf(tenantB.id), TenantState.ACTIVE);
  });

  test("CloseTenant refuses a call without a valid credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.closeTenant({ tenantId: tenantA.id }), Code.Unauthenticated);
    await refusedWith(forged.closeTenant({ tenantId: tenantA.id }), Code.Unauthenticated);
  });

  test("CloseTenant refuses a tenant principal lacking tenancy.tenants.close with PERMISSION_DENIED", async () => {
    await refusedWith(readerA.closeTenant({ tenantId: tenantA.id }), Code.PermissionDenied, "tenancy.tenants.close");
    assert.equal(await stateOf(tenantA.id), TenantState.ACTIVE);
  });
});

describe("GetSecurityPolicy", () => {
  test("GetSecurityPolicy returns the default policy of a new tenant", async () => {
    const t = await newTenant();
    const { policy } = await ops.getSecurityPolicy({ tenantId: t.id });
    assert.ok(policy !== undefined);
    assert.equal(policy.tenantId, t.id);
    assert.equal(policy.mfaRequirement, MfaRequirement.ADMINS);
    assert.equal(policy.passwordMinLength, 12);
    assert.equal(secondsOf(policy.accessTokenLifetime), 3600);
    assert.equal(secondsOf(policy.refreshTokenLifetime), 24 * 3600);
    assert.equal(secondsOf(policy.idleTimeout), 30 * 60);
    assert.equal(secondsOf(policy.apiKeyMaxLifetime), 90 * day);
    assert.equal(secondsOf(policy.auditRetention), 730 * day);
    assert.deepEqual(policy.ipAllowlist, []);
    assert.equal(policy.inactiveAccount?.inactiveAfterDays, 365);
    assert.equal(policy.inactiveAccount?.warnAfterDays, 335);
    assert.equal(policy.inactiveAccount?.graceDays, 30);
    assert.equal(secondsOf(policy.reauthenticationWindow), 15 * 60);
    assert.equal(policy.revision, 1n);
  });

  test("GetSecurityPolicy returns its own tenant's policy to a tenant principal holding tenancy.policies.read", async () => {
    const { policy } = await readerA.getSecurityPolicy({ tenantId: tenantA.id });
    assert.equal(policy?.tenantId, tenantA.id);
  });

  test("GetSecurityPolicy refuses a malformed tenant_id with INVALID_ARGUMENT naming tenant_id", async () => {
    await refusedWith(ops.getSecurityPolicy({ tenantId: "acme" }), Code.InvalidArgument, "tenant_id");
  });

  test("GetSecurityPolicy answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.getSecurityPolicy({ tenantId: missingId }), Code.NotFound);
  });

  test("GetSecurityPolicy answers NOT_FOUND, not PERMISSION_DENIED, to a tenant principal asking for another tenant's policy", async () => {
    const other = await refusedWith(readerA.getSecurityPolicy({ tenantId: tenantB.id }), Code.NotFound);
    const missing = await refusedWith(readerA.getSecurityPolicy({ tenantId: missingId }), Code.NotFound);
    assert.equal(other.rawMessage, missing.rawMessage);
  });

  test("GetSecurityPolicy refuses a call without a valid credential with UNAUTHENTICATED", async () => {
    await refusedWith(anon.getSecurityPolicy({ tenantId: tenantA.id }), Code.Unauthenticated);
    await refusedWith(forged.getSecurityPolicy({ tenantId: tenantA.id }), Code.Unauthenticated);
  });

  test("GetSecurityPolicy refuses a tenant principal lacking tenancy.policies.read with PERMISSION_DENIED", async () => {
    await refusedWith(nobodyA.getSecurityPolicy({ tenantId: tenantA.id }), Code.PermissionDenied, "tenancy.policies.read");
  });

  test("GetSecurityPolicy refuses a tenant principal whose bulwark-tenant header names another tenant with PERMISSION_DENIED", async () => {
    const client = tenantUser(tenantA.id, ["tenancy.policies.read"], { "bulwark-tenant": tenantB.id });
    await refusedWith(client.getSecurityPolicy({ tenantId: tenantB.id }), Code.PermissionDenied);
  });
});

describe("UpdateSecurityPolicy", () => {
  test("UpdateSecurityPolicy changes only the masked fields and increments the revision", async () => {
    const t = await newTenant();
    const { policy } = await ops.updateSecurityPolicy({
      tenantId: t.id,
      policy: { passwordMinLength: 16, mfaRequirement: MfaRequirement.EVERYONE, accessTokenLifetime: { seconds: 900n } },
      updateMask: { paths: ["password_min_length", "access_token_lifetime"] },
    });
    assert.equal(policy?.passwordMinLength, 16);
    assert.equal(secondsOf(policy?.accessTokenLifetime), 900);
    assert.equal(policy?.mfaRequirement, MfaRequirement.ADMINS, "mfa_requirement is not in the mask");
    assert.equal(secondsOf(policy?.refreshTokenLifetime), 24 * 3600);
    assert.equal(policy?.revision, 2n);
    assert.equal(policy?.tenantId, t.id);
    assert.deepEqual((await ops.getSecurityPolicy({ tenantId: t.id })).policy, policy);
  });

  test("UpdateSecurityPolicy sets the reauthentication window named in the mask", async () => {
    const t = await newTenant();
    const { policy } = await ops.updateSecurityPolicy({ tenantId: t.id, policy: { reauthenticationWindow: { seconds: 300n } }, updateMask: { paths: ["reauthentication_window"] } });
    assert.equal(secondsOf(policy?.reauthenticationWindow), 300);
    assert.equal(policy?.revision, 2n);
    assert.equal(secondsOf((await ops.getSecurityPolicy({ tenantId: t.id })).policy?.reauthenticationWindow), 300);
  });

  test("UpdateSecurityPolicy sets the ip_allowlist, the inactive-account policy and MFA for everyone", async () => {
    const t = await newTenant();
    const { policy } = await ops.updateSecurityPolicy({
      tenantId: t.id,
      policy: { ipAllowlist: ["10.0.0.0/8", "2001:db8::/32"], inactiveAccount: { inactiveAfterDays: 90, warnAfterDays: 60, graceDays: 7 }, mfaRequirement: MfaRequirement.EVERYONE },
      updateMask: { paths: ["ip_allowlist", "inactive_account", "mfa_requirement"] },
    });
    assert.deepEqual(policy?.ipAllowlist, ["10.0.0.0/8", "2001:db8::/32"]);
    assert.deepEqual([policy?.inactiveAccount?.inactiveAfterDays, policy?.inactiveAccount?.warnAfterDays, policy?.inactiveAccount?.graceDays], [90, 60, 7]);
    assert.equal(policy?.mfaRequirement, MfaRequirement.EVERYONE);
    assert.equal(policy?.revision, 2n);
  });

  test("UpdateSecurityPolicy applies at the expected_revision and increments it by one per change", async () => {
    const t = await newTenant();
    const first = (await ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 14 }, updateMask: { paths: ["password_min_length"] }, expectedRevision: 1n })).policy;
    assert.equal(first?.revision, 2n);
    const second = (await ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 15 }, updateMask: { paths: ["password_min_length"] }, expectedRevision: 2n })).policy;
    assert.equal(second?.revision, 3n);
    assert.equal(second?.passwordMinLength, 15);
  });

  test("UpdateSecurityPolicy lets a tenant principal holding tenancy.policies.update change its own policy", async () => {
    const t = await newTenant();
    const admin = tenantUser(t.id, ["tenancy.policies.update"]);
    const { policy } = await admin.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 20 }, updateMask: { paths: ["password_min_length"] } });
    assert.equal(policy?.passwordMinLength, 20);
  });

  test("UpdateSecurityPolicy refuses a stale expected_revision with ABORTED and changes nothing", async () => {
    const t = await newTenant();
    await ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 14 }, updateMask: { paths: ["password_min_length"] } });
    await refusedWith(ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 30 }, updateMask: { paths: ["password_min_length"] }, expectedRevision: 1n }), Code.Aborted);
    const { policy } = await ops.getSecurityPolicy({ tenantId: t.id });
    assert.equal(policy?.passwordMinLength, 14);
    assert.equal(policy?.revision, 2n);
  });

  test("UpdateSecurityPolicy applies one of two concurrent updates at the same expected_revision; the other gets ABORTED", async () => {
    const t = await newTenant();
    const results = await Promise.allSettled([14, 16].map((n) => ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: n }, updateMask: { paths: ["password_min_length"] }, expectedRevision: 1n })));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) if (r.status === "rejected") await refusedWith(Promise.reject(r.reason), Code.Aborted);
    assert.equal((await ops.getSecurityPolicy({ tenantId: t.id })).policy?.revision, 2n);
  });

  test("UpdateSecurityPolicy does not change the revision when nothing changes", async () => {
    const t = await newTenant();
    const { policy } = await ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 12 }, updateMask: { paths: ["password_min_length"] } });
    assert.equal(policy?.revision, 1n);
  });

  test("UpdateSecurityPolicy refuses a bad CIDR in ip_allowlist with INVALID_ARGUMENT naming policy.ip_allowlist", async () => {
    await refusedWith(
      ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { ipAllowlist: ["10.0.0.0/8", "10.0.0.300/8"] }, updateMask: { paths: ["ip_allowlist"] } }),
      Code.InvalidArgument,
      "ip_allowlist[1]",
    );
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { ipAllowlist: ["10.0.0.0/33"] }, updateMask: { paths: ["ip_allowlist"] } }), Code.InvalidArgument, "ip_allowlist");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { ipAllowlist: ["10.0.0.1"] }, updateMask: { paths: ["ip_allowlist"] } }), Code.InvalidArgument, "ip_allowlist");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { ipAllowlist: ["10.0.0.0/8", "10.0.0.0/8"] }, updateMask: { paths: ["ip_allowlist"] } }), Code.InvalidArgument, "ip_allowlist");
  });

  test("UpdateSecurityPolicy refuses a duration out of range with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { accessTokenLifetime: { seconds: 60n } }, updateMask: { paths: ["access_token_lifetime"] } }), Code.InvalidArgument, "policy.access_token_lifetime");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { refreshTokenLifetime: { seconds: BigInt(91 * day) } }, updateMask: { paths: ["refresh_token_lifetime"] } }), Code.InvalidArgument, "refresh_token_lifetime");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { apiKeyMaxLifetime: { seconds: 3600n } }, updateMask: { paths: ["api_key_max_lifetime"] } }), Code.InvalidArgument, "api_key_max_lifetime");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { auditRetention: { seconds: BigInt(11 * 365 * day) } }, updateMask: { paths: ["audit_retention"] } }), Code.InvalidArgument, "audit_retention");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { idleTimeout: { seconds: 299n } }, updateMask: { paths: ["idle_timeout"] } }), Code.InvalidArgument, "idle_timeout");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { reauthenticationWindow: { seconds: 59n } }, updateMask: { paths: ["reauthentication_window"] } }), Code.InvalidArgument, "reauthentication_window");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { reauthenticationWindow: { seconds: 86_401n } }, updateMask: { paths: ["reauthentication_window"] } }), Code.InvalidArgument, "reauthentication_window");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: {}, updateMask: { paths: ["reauthentication_window"] } }), Code.InvalidArgument, "reauthentication_window");
  });

  test("UpdateSecurityPolicy refuses a password_min_length outside 8-64 with INVALID_ARGUMENT naming it", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { passwordMinLength: 7 }, updateMask: { paths: ["password_min_length"] } }), Code.InvalidArgument, "password_min_length");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { passwordMinLength: 65 }, updateMask: { paths: ["password_min_length"] } }), Code.InvalidArgument, "password_min_length");
  });

  test("UpdateSecurityPolicy refuses an unknown update_mask path with INVALID_ARGUMENT naming update_mask", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: {}, updateMask: { paths: ["revision"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: {}, updateMask: { paths: ["no_such_field"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { passwordMinLength: 12 } }), Code.InvalidArgument, "update_mask");
  });

  test("UpdateSecurityPolicy refuses a missing policy with INVALID_ARGUMENT naming policy", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, updateMask: { paths: ["password_min_length"] } }), Code.InvalidArgument, "policy");
  });

  test("UpdateSecurityPolicy refuses a masked field left unset with INVALID_ARGUMENT naming it", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: {}, updateMask: { paths: ["access_token_lifetime"] } }), Code.InvalidArgument, "access_token_lifetime");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: {}, updateMask: { paths: ["inactive_account"] } }), Code.InvalidArgument, "inactive_account");
  });

  test("UpdateSecurityPolicy refuses an inconsistent result with INVALID_ARGUMENT naming the field", async () => {
    await refusedWith(
      ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { inactiveAccount: { inactiveAfterDays: 60, warnAfterDays: 60, graceDays: 7 } }, updateMask: { paths: ["inactive_account"] } }),
      Code.InvalidArgument,
      "warn_after_days",
    );
    await refusedWith(
      ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { accessTokenLifetime: { seconds: 7200n }, refreshTokenLifetime: { seconds: 3600n } }, updateMask: { paths: ["access_token_lifetime", "refresh_token_lifetime"] } }),
      Code.InvalidArgument,
      "refresh_token_lifetime",
    );
    assert.equal((await ops.getSecurityPolicy({ tenantId: tenantA.id })).policy?.revision, 1n, "a refused update changes nothing");
  });

  test("UpdateSecurityPolicy refuses a negative expected_revision or malformed tenant_id with INVALID_ARGUMENT naming it", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: tenantA.id, policy: { passwordMinLength: 12 }, updateMask: { paths: ["password_min_length"] }, expectedRevision: -1n }), Code.InvalidArgument, "expected_revision");
    await refusedWith(ops.updateSecurityPolicy({ tenantId: "x", policy: { passwordMinLength: 12 }, updateMask: { paths: ["password_min_length"] } }), Code.InvalidArgument, "tenant_id");
  });

  test("UpdateSecurityPolicy answers NOT_FOUND for a tenant that does not exist", async () => {
    await refusedWith(ops.updateSecurityPolicy({ tenantId: missingId, policy: { passwordMinLength: 12 }, updateMask: { paths: ["password_min_length"] } }), Code.NotFound);
  });

  test("UpdateSecurityPolicy answers NOT_FOUND to a tenant principal naming another tenant, whose policy stays unchanged", async () => {
    await refusedWith(adminA.updateSecurityPolicy({ tenantId: tenantB.id, policy: { passwordMinLength: 8 }, updateMask: { paths: ["password_min_length"] } }), Code.NotFound);
    const { policy } = await ops.getSecurityPolicy({ tenantId: tenantB.id });
    assert.equal(policy?.passwordMinLength, 12);
    assert.equal(policy?.revision, 1n);
  });

  test("UpdateSecurityPolicy refuses a closing tenant with FAILED_PRECONDITION", async () => {
    const t = await closedTenant();
    await refusedWith(ops.updateSecurityPolicy({ tenantId: t.id, policy: { passwordMinLength: 20 }, updateMask: { paths: ["password_min_length"] } }), Code.FailedPrecondition);
  });

  test("UpdateSecurityPolicy refuses a call without a valid credential with UNAUTHENTICATED", async () => {
    const req = { tenantId: tenantA.id, policy: { passwordMinLength: 20 }, updateMask: { paths: ["password_min_length"] } };
    await refusedWith(anon.updateSecurityPolicy(req), Code.Unauthenticated);
    await refusedWith(forged.updateSecurityPolicy(req), Code.Unauthenticated);
  });

  test("UpdateSecurityPolicy refuses a tenant principal lacking tenancy.policies.update with PERMISSION_DENIED", async () => {
    await refusedWith(readerA.updateSecurityPolicy({ tenantId: tenantA.id, policy: { passwordMinLength: 20 }, updateMask: { paths: ["password_min_length"] } }), Code.PermissionDenied, "tenancy.policies.update");
  });

  test("UpdateSecurityPolicy refuses a tenant principal whose bulwark-tenant header names another tenant with PERMISSION_DENIED", async () => {
    const client = tenantUser(tenantA.id, ["tenancy.policies.update"], { "bulwark-tenant": tenantB.id });
    await refusedWith(client.updateSecurityPolicy({ tenantId: tenantB.id, policy: { passwordMinLength: 20 }, updateMask: { paths: ["password_min_length"] } }), Code.PermissionDenied);
  });
});
