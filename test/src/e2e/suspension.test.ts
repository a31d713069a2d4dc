/**
 * A suspended or closing tenant is refused mesh-wide, fast: on tenancy
 * itself and in an independent TenantStatusCache (what every other service
 * runs), within a second; reactivation lifts it; other tenants never notice.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { Region, TenancyService, TenantState } from "@bulwark/contracts";
import { MeshKeys } from "@bulwark/core";
import { recordTenantAccess, TenantStatusCache, tenantStatusBucket } from "@bulwark/events";
import { Kvm } from "@nats-io/kv";
import { tenancyModule } from "@bulwark/tenancy";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { bootstrapToken, clientFor, eventually, natsUrl, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { codeOf, expectCode, quietLogger, TcpProxy } from "./support-e2e.js";

const withinMs = 1000;

describe("tenant suspension is enforced mesh-wide", () => {
  let svc: Started | undefined;
  let otherNc: NatsConnection | undefined;
  let otherService: TenantStatusCache | undefined;

  before(async () => {
    svc = await startTestService(tenancyModule);
    otherNc = await connect({ servers: natsUrl });
    otherService = new TenantStatusCache({ keys: MeshKeys.development("keys"), logger: quietLogger });
    await otherService.start(otherNc, svc.prefix);
  });

  after(async () => {
    otherService?.stop();
    await otherNc?.close().catch(() => undefined);
    await svc?.stop();
  });

  async function newTenant(label: string): Promise<{ id: string; slug: string; user: ReturnType<typeof clientFor<typeof TenancyService>> }> {
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    const slug = uniqueSlug(label);
    const id = (await ops.createTenant({ slug, displayName: label, region: Region.EU })).tenant!.id;
    const token = svc!.issueToken({ id: `usr_${label}`, kind: "user", tenantId: id, permissions: new Set(["tenancy.tenants.read", "tenancy.policies.read"]) });
    return { id, slug, user: clientFor(TenancyService, svc!.baseUrl, token) };
  }

  /** Waits until both tenancy and the other service see the tenant as `blocked`; returns how long it took. */
  async function convergence(tenant: { id: string; user: ReturnType<typeof clientFor<typeof TenancyService>> }, blocked: boolean, since: number): Promise<number> {
    await eventually(async () => {
      const code = await codeOf(tenant.user.getTenant({ tenantId: tenant.id }));
      return (blocked ? code === "PermissionDenied" : code === "OK") && otherService!.isBlocked(tenant.id) === blocked;
    }, withinMs + 200, 20);
    const took = Date.now() - since;
    assert.ok(took <= withinMs, `took ${took} ms, more than ${withinMs} ms`);
    return took;
  }

  test("suspend refuses the tenant's calls within a second everywhere; reactivation lifts it; others are unaffected", async () => {
    const a = await newTenant("a");
    const b = await newTenant("b");
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    assert.equal((await a.user.getTenant({ tenantId: a.id })).tenant?.id, a.id);
    assert.equal(otherService!.isBlocked(a.id), false);

    let t0 = Date.now();
    const suspended = await ops.suspendTenant({ tenantId: a.id, reason: "unpaid invoice" });
    assert.equal(suspended.tenant?.state, TenantState.SUSPENDED);
    await convergence(a, true, t0);
    const refused = await expectCode(a.user.getTenant({ tenantId: a.id }), Code.PermissionDenied);
    assert.doesNotMatch(refused.rawMessage, /unpaid invoice/, "the suspension reason is not shown to the tenant");
    await expectCode(a.user.getSecurityPolicy({ tenantId: a.id }), Code.PermissionDenied);
    await expectCode(clientFor(TenancyService, svc!.baseUrl, undefined, "connect").getTenant({ tenantId: a.id }), Code.Unauthenticated);

    // Sign-in resolution reports it inactive; the operator still sees it.
    const resolved = await clientFor(TenancyService, svc!.baseUrl).resolveTenant({ slug: a.slug });
    assert.deepEqual({ id: resolved.tenantId, active: resolved.active }, { id: a.id, active: false });
    assert.equal((await ops.getTenant({ tenantId: a.id })).tenant?.state, TenantState.SUSPENDED);

    // Tenant B never noticed.
    assert.equal((await b.user.getTenant({ tenantId: b.id })).tenant?.id, b.id);
    assert.equal(otherService!.isBlocked(b.id), false);

    t0 = Date.now();
    await ops.reactivateTenant({ tenantId: a.id });
    await convergence(a, false, t0);
    assert.equal((await clientFor(TenancyService, svc!.baseUrl).resolveTenant({ slug: a.slug })).active, true);

    // Closing blocks too.
    t0 = Date.now();
    const closing = await ops.closeTenant({ tenantId: a.id, reason: "customer left" });
    assert.equal(closing.tenant?.state, TenantState.CLOSING);
    await convergence(a, true, t0);
    assert.equal((await clientFor(TenancyService, svc!.baseUrl).resolveTenant({ slug: a.slug })).active, false);
    assert.equal((await b.user.getTenant({ tenantId: b.id })).tenant?.id, b.id);
    assert.equal(otherService!.isBlocked(b.id), false);

    // And a closing tenant can be brought back.
    t0 = Date.now();
    await ops.reactivateTenant({ tenantId: a.id });
    await convergence(a, false, t0);
  });

  test("a service that starts after the suspension sees it at once", async () => {
    const c = await newTenant("c");
    await clientFor(TenancyService, svc!.baseUrl, bootstrapToken).suspendTenant({ tenantId: c.id, reason: "e2e" });
    await convergence(c, true, Date.now());
    const nc = await connect({ servers: natsUrl });
    const late = new TenantStatusCache({ keys: MeshKeys.development("keys"), logger: quietLogger });
    try {
      // Started with room to load the whole bucket (start gives up waiting after 2 s by default, fail-closed; a loaded machine may need longer).
      await late.start(nc, svc!.prefix, 30_000);
      assert.equal(late.ready, true);
      assert.equal(late.isBlocked(c.id), true);
    } finally {
      late.stop();
      await nc.close();
    }
  });

  test("an entry not signed by tenancy, or a deletion, never lifts or fakes a suspension", async () => {
    const d = await newTenant("d");
    const e = await newTenant("e");
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    await ops.suspendTenant({ tenantId: d.id, reason: "e2e" });
    await convergence(d, true, Date.now());
    const nc = await connect({ servers: natsUrl });
    try {
      const kv = await new Kvm(nc).open(tenantStatusBucket(svc!.prefix));
      // Anyone on NATS deleting the entry (the old way to un-suspend a tenant mesh-wide).
      await kv.delete(d.id);
      // An unsigned value, and one signed by another service's key, claiming e is suspended.
      await kv.put(e.id, JSON.stringify({ s: "suspended", ip: [] }));
      await recordTenantAccess(kv, MeshKeys.development("identity"), e.id, { state: "suspended", ipAllowlist: [] });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(otherService!.isBlocked(d.id), true, "a deletion leaves the suspension in force");
      assert.equal(otherService!.isBlocked(e.id), false, "a forged entry is ignored");
      assert.equal(await codeOf(d.user.getTenant({ tenantId: d.id })), "PermissionDenied");
      assert.equal(await codeOf(e.user.getTenant({ tenantId: e.id })), "OK");
    } finally {
      await nc.close();
    }
  });

  test("the gate is not ready until the bucket's state has loaded, and a cut connection catches up when it is back", async () => {
    const f = await newTenant("f");
    const proxy = new TcpProxy("127.0.0.1", Number(new URL(natsUrl).port || 4222));
    const port = await proxy.start();
    const nc = await connect({ servers: `nats://127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const cache = new TenantStatusCache({ keys: MeshKeys.development("keys"), logger: quietLogger, retryMs: 100 });
    const missing = new TenantStatusCache({ keys: MeshKeys.development("keys"), logger: quietLogger, retryMs: 100 });
    try {
      await missing.start(nc, `${svc!.prefix}nobucket`, 300);
      assert.equal(missing.ready, false, "no bucket yet: not ready, so the service reports NOT_SERVING");
      await cache.start(nc, svc!.prefix);
      assert.equal(cache.ready, true);
      await proxy.stop();
      await clientFor(TenancyService, svc!.baseUrl, bootstrapToken).suspendTenant({ tenantId: f.id, reason: "while cut off" });
      await new Promise((r) => setTimeout(r, 500));
      await proxy.start();
      await eventually(() => cache.isBlocked(f.id), 10_000, 50);
    } finally {
      await missing.stopped();
      await cache.stopped();
      await nc.close().catch(() => undefined);
      await proxy.stop();
    }
  });
});
