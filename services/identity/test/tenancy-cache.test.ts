/**
 * CachedTenancy, identity's copy of the two tenancy reads of every sign-in:
 * answers are reused until an event about the tenant evicts them, a read
 * that raced an eviction is not kept, the tenant gate overrides a cached
 * "active", and only identity's own reads are cached.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, GetSecurityPolicyResponseSchema, ResolveTenantResponseSchema, SecurityPolicySchema, type TenancyClient } from "@bulwark/contracts";
import { runAsService, runWithContext } from "@bulwark/core";
import { CachedTenancy } from "../src/tenancy-cache.js";

/** A tenancy client that counts calls and answers from a table it can change. */
function upstream() {
  const calls = { resolveTenant: 0, getSecurityPolicy: 0, getTenant: 0 };
  const state = { active: true, minLength: 12, delayMs: 0 };
  const client = {
    async resolveTenant(req: { slug?: string }) {
      calls.resolveTenant++;
      const answer = create(ResolveTenantResponseSchema, { tenantId: `ten_${req.slug}`, active: state.active });
      if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
      return answer;
    },
    async getSecurityPolicy(req: { tenantId?: string }) {
      calls.getSecurityPolicy++;
      return create(GetSecurityPolicyResponseSchema, { policy: create(SecurityPolicySchema, { tenantId: req.tenantId ?? "", passwordMinLength: state.minLength }) });
    },
    async getTenant() {
      calls.getTenant++;
      return {};
    },
  } as unknown as TenancyClient;
  return { client, calls, state };
}

const asIdentity = <T>(fn: () => T): T => runAsService("identity", undefined, fn);

describe("CachedTenancy", () => {
  test("identity's reads are answered from the cache until an event about the tenant evicts them", async () => {
    const up = upstream();
    const cache = new CachedTenancy(up.client, { ttlMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      assert.equal((await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }))).tenantId, "ten_acme");
      assert.equal((await asIdentity(() => cache.client.getSecurityPolicy({ tenantId: "ten_acme" }))).policy?.passwordMinLength, 12);
    }
    assert.deepEqual({ ...up.calls }, { resolveTenant: 1, getSecurityPolicy: 1, getTenant: 0 });
    up.state.minLength = 20;
    up.state.active = false;
    cache.evict("ten_acme");
    assert.equal((await asIdentity(() => cache.client.getSecurityPolicy({ tenantId: "ten_acme" }))).policy?.passwordMinLength, 20);
    assert.equal((await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }))).active, false);
    assert.deepEqual({ ...up.calls }, { resolveTenant: 2, getSecurityPolicy: 2, getTenant: 0 });
  });

  test("an event on NATS is what evicts: the watch decodes the envelope's tenant", async () => {
    const up = upstream();
    const cache = new CachedTenancy(up.client, { ttlMs: 60_000 });
    let deliver: ((err: Error | null, msg: { data: Uint8Array; subject: string }) => void) | undefined;
    const nc = { subscribe: (_subject: string, opts: { callback: typeof deliver }) => ((deliver = opts.callback), {}) } as never;
    cache.watch(nc, "bulwark");
    await asIdentity(() => cache.client.getSecurityPolicy({ tenantId: "ten_acme" }));
    deliver?.(null, { subject: "bulwark.tenancy.tenant.policy_changed", data: toBinary(EnvelopeSchema, create(EnvelopeSchema, { aggregateId: "ten_acme" })) });
    await asIdentity(() => cache.client.getSecurityPolicy({ tenantId: "ten_acme" }));
    assert.equal(up.calls.getSecurityPolicy, 2);
  });

  test("a read that raced an eviction is answered but not kept", async () => {
    const up = upstream();
    const cache = new CachedTenancy(up.client, { ttlMs: 60_000 });
    up.state.delayMs = 50;
    const racing = asIdentity(() => cache.client.resolveTenant({ slug: "acme" }));
    cache.evict("ten_other");
    await racing;
    up.state.delayMs = 0;
    await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }));
    assert.equal(up.calls.resolveTenant, 2);
  });

  test("a cached active tenant is answered inactive as soon as the tenant gate blocks it", async () => {
    const up = upstream();
    const blocked = new Set<string>();
    const cache = new CachedTenancy(up.client, { ttlMs: 60_000, gate: { isBlocked: (id) => blocked.has(id) } });
    assert.equal((await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }))).active, true);
    blocked.add("ten_acme");
    assert.equal((await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }))).active, false);
    assert.equal(up.calls.resolveTenant, 1);
  });

  test("reads made for another caller, and other methods, go to tenancy every time", async () => {
    const up = upstream();
    const cache = new CachedTenancy(up.client, { ttlMs: 60_000 });
    const asUser = <T>(fn: () => T): T => runWithContext({ requestId: "r", tenantId: "ten_acme", principal: { id: "usr_1", kind: "user", tenantId: "ten_acme", permissions: new Set() } }, fn);
    await asUser(() => cache.client.getSecurityPolicy({ tenantId: "ten_acme" }));
    await asUser(() => cache.client.getSecurityPolicy({ tenantId: "ten_acme" }));
    await asIdentity(() => cache.client.getTenant({ tenantId: "ten_acme" }));
    await asIdentity(() => cache.client.getTenant({ tenantId: "ten_acme" }));
    assert.deepEqual({ ...up.calls }, { resolveTenant: 0, getSecurityPolicy: 2, getTenant: 2 });
  });

  test("a TTL of 0 caches nothing", async () => {
    const up = upstream();
    const cache = new CachedTenancy(up.client, { ttlMs: 0 });
    await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }));
    await asIdentity(() => cache.client.resolveTenant({ slug: "acme" }));
    assert.equal(up.calls.resolveTenant, 2);
  });
});
