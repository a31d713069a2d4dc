/**
 * Audit across the mesh (tenancy, identity, keys and audit on real
 * Postgres and NATS): an action in each service ends in the right tenant's
 * trail with the right actor; no password or plain personal data is in any
 * entry; destroying a data subject's key leaves every proof valid and the
 * person unreadable.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ActorType, AuthService, EncryptionService, Outcome, UserService, type AuditEntry } from "@bulwark/contracts";
import { leafHash, openCheckpoint, parseVerifierKey, verifyInclusion } from "@bulwark/tlog";
import { entryOfLeaf } from "@bulwark/audit";
import { effectivePermissions } from "@bulwark/core";
import { clientFor, eventually } from "../support/harness.js";
import { createUser, tenantWithSlug, type TestTenant, type TestUser } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";
import { auditOperator, auditQuery, auditUser, startAuditMesh, type AuditMesh } from "../contract/support-audit.js";

let mesh: AuditMesh;
let tenant: TestTenant;
let user: TestUser;

/** The identity helpers' view of this mesh. */
const identityMesh = (): IdentityMesh => ({ tenancy: mesh.tenancy, identity: mesh.identity, tenancyOps: mesh.tenancyOps, stop: () => Promise.resolve() });

async function entries(tenantId: string, action: string): Promise<AuditEntry[]> {
  let found: AuditEntry[] = [];
  await eventually(async () => {
    found = (await auditUser(mesh, tenantId).listEntries({ action, pageSize: 100 })).entries;
    return found.length > 0;
  }, 15_000);
  return found;
}

before(async () => {
  mesh = await startAuditMesh({ identity: true });
  tenant = await tenantWithSlug(identityMesh());
  user = await createUser(identityMesh(), tenant, { roles: ["system:admin"] });
});
after(async () => {
  await mesh?.stop();
});

describe("audit across the mesh", () => {
  test("an action in tenancy, identity and keys each ends in the tenant's trail with its actor", async () => {
    const [created] = await entries(tenant.id, "tenancy.tenant.created");
    assert.equal(created!.tenantId, tenant.id);
    assert.equal(created!.actor?.type, ActorType.BOOTSTRAP);
    assert.equal(created!.source, "tenancy");

    const auth = clientFor(AuthService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.9.8.7" });
    const res = await auth.signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "Firefox on Linux" });
    assert.equal(res.result.case, "tokens");
    const [signedIn] = await entries(tenant.id, "identity.user.signed_in");
    assert.equal(signedIn!.resource?.id, user.id);
    assert.equal(signedIn!.outcome, Outcome.SUCCESS);
    assert.equal(signedIn!.sourceIp?.subjectId, user.id, "the address is sealed under the user's key");
    await auth.signIn({ tenantSlug: tenant.slug, email: user.email, password: "Wrong-password-123456", device: "curl" }).catch(() => undefined);
    const [failed] = await entries(tenant.id, "identity.user.sign_in_failed");
    assert.equal(failed!.outcome, Outcome.DENIED);

    const keys = clientFor(EncryptionService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: user.id, kind: "user", tenantId: tenant.id, permissions: new Set(["keys.encryption.rotate"]) }));
    await keys.rotateKey({});
    const [rotated] = await entries(tenant.id, "keys.key_ring.rotated");
    assert.equal(rotated!.actor?.id, user.id);
    assert.equal(rotated!.actor?.type, ActorType.USER);
    assert.equal(rotated!.tenantId, tenant.id);
    assert.equal(rotated!.sourceIp?.subjectId, user.id, "the caller's address, from the envelope, sealed under the actor's key");
    assert.equal(rotated!.userAgent?.subjectId, user.id);
  });

  test("no password, secret or plain personal data appears in any stored entry", async () => {
    await entries(tenant.id, "identity.user.signed_in");
    const rows = await auditQuery<{ leaf: Buffer }>(mesh, "select leaf from $schema.entries");
    assert.ok(rows.length > 0);
    for (const { leaf } of rows) {
      const text = leaf.toString("latin1");
      for (const forbidden of [user.password, "Wrong-password-123456", user.email, "10.9.8.7", "Firefox on Linux"]) assert.ok(!text.includes(forbidden), `an entry holds ${forbidden.slice(0, 4)}…`);
    }
    const [signedIn] = await entries(tenant.id, "identity.user.signed_in");
    const got = await auditUser(mesh, tenant.id).getEntry({ entryId: signedIn!.entryId, decrypt: true });
    assert.equal(got.personal["source_ip"], "10.9.8.7", "readable while the subject's key exists");
    assert.equal(got.personal["user_agent"], "Firefox on Linux");
  });

  test("a destroyed subject key leaves every proof valid and the person unreadable", async () => {
    const a = auditUser(mesh, tenant.id);
    const [signedIn] = await entries(tenant.id, "identity.user.signed_in");
    const { verifierKey } = await a.getVerifierKey({});
    const cp = openCheckpoint((await a.getCheckpoint({ refresh: true })).checkpoint, parseVerifierKey(verifierKey));
    const keys = clientFor(EncryptionService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: "usr_dpo", kind: "user", tenantId: tenant.id, permissions: new Set(["keys.subject_keys.destroy"]) }));
    await keys.destroySubjectKey({ subjectId: user.id, reason: "erasure request" });
    const got = await a.getEntry({ entryId: signedIn!.entryId, decrypt: true });
    assert.deepEqual(got.personal, {}, "the person is unreadable");
    assert.deepEqual(got.entry, signedIn, "the entry itself is unchanged");
    for await (const m of a.exportEntries({ includeProofs: true })) {
      if (m.item.case !== "entry" || Number(m.item.value.leafIndex) >= cp.size) continue;
      const e = m.item.value;
      const p = await a.getInclusionProof({ leaf: { case: "leafIndex", value: e.leafIndex }, treeSize: BigInt(cp.size) });
      assert.ok(verifyInclusion(Number(e.leafIndex), cp.size, leafHash(e.leaf), p.hashes, cp.rootHash), `leaf ${e.leafIndex} still proves`);
      assert.equal(entryOfLeaf(e.leaf).entryId, e.entryId);
    }
    // Later actions of the erased person are still recorded, without their personal data.
    const auth = clientFor(AuthService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.9.8.6" });
    await auth.signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "After erasure" });
    let later: AuditEntry[] = [];
    await eventually(async () => {
      later = (await a.listEntries({ action: "identity.user.signed_in" })).entries;
      return later.length >= 2;
    }, 15_000);
    assert.equal(later[0]!.sourceIp, undefined, "no key to seal it under: not kept");
    assert.equal(later[0]!.resource?.id, user.id);
  });
});

describe("refused calls in the trail", () => {
  test("permission denials are batched with a count under a flood and recorded once per window", async () => {
    const intruder = `usr_${"x".repeat(8)}${Date.now()}`;
    const keys = clientFor(EncryptionService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: intruder, kind: "user", tenantId: tenant.id, permissions: new Set() }), "grpc", { "x-forwarded-for": "10.1.1.1" });
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => keys.rotateKey({})));
    assert.ok(results.every((r) => r.status === "rejected"));
    let denied: AuditEntry[] = [];
    await eventually(async () => {
      denied = (await auditUser(mesh, tenant.id).listEntries({ action: "keys.call.denied", actorId: intruder, pageSize: 100 })).entries;
      return denied.reduce((n, e) => n + e.count, 0) >= 50;
    }, 15_000);
    assert.equal(denied.reduce((n, e) => n + e.count, 0), 50, "every refusal counted once");
    assert.ok(denied.length <= 5, `a flood is a few entries (${denied.length}), not one per call`);
    assert.ok(denied.every((e) => e.outcome === Outcome.DENIED && e.resource?.id === "bulwark.keys.v1.EncryptionService/RotateKey" && e.tenantId === tenant.id));
  });

  test("failed authentications outside any tenant go to the platform log", async () => {
    const keys = clientFor(EncryptionService, mesh.keys.baseUrl, "not-a-valid-token", "grpc", { "x-forwarded-for": "10.2.2.2" });
    await keys.rotateKey({}).catch(() => undefined);
    await eventually(async () => (await auditOperator(mesh).listEntries({ tenantId: "platform", action: "keys.call.authentication_failed" })).entries.length > 0, 15_000);
  });
});

describe("actor roles in the trail", () => {
  test("an entry written in a call names the roles the actor's access token carried; a principal without roles has none", async () => {
    // A Team Lead (no second factor required, so the token carries the role's permissions).
    const lead = await createUser(identityMesh(), tenant, { roles: ["system:team_lead"] });
    const res = await clientFor(AuthService, mesh.identity.baseUrl).signIn({ tenantSlug: tenant.slug, email: lead.email, password: lead.password, device: "Firefox on Linux" });
    assert.equal(res.result.case, "tokens");
    const token = res.result.case === "tokens" ? res.result.value.accessToken : "";
    // The change is made in a call with the lead's access token: the token's roles go into the event's actor.
    await clientFor(UserService, mesh.identity.baseUrl, token).updateUser({ userId: lead.id, displayName: "Lead Renamed", updateMask: { paths: ["display_name"] } });
    let updated: AuditEntry | undefined;
    await eventually(async () => {
      updated = (await auditUser(mesh, tenant.id).listEntries({ action: "identity.user.updated", actorId: lead.id, pageSize: 10 })).entries[0];
      return updated !== undefined;
    }, 15_000);
    assert.equal(updated!.actor?.type, ActorType.USER);
    assert.deepEqual(updated!.actor?.roles, ["system:team_lead"]);
    // A principal without roles (an API key, a service, the bootstrap operator) has none in its entries.
    const [tenantCreated] = await entries(tenant.id, "tenancy.tenant.created");
    assert.deepEqual(tenantCreated!.actor?.roles, []);
  });
});

describe("whose key seals what", () => {
  test("an admin's address in an action on a user outlives the user's erasure and goes with the admin's", async () => {
    const admin = await createUser(identityMesh(), tenant, { roles: ["system:admin"] });
    const target = await createUser(identityMesh(), tenant);
    const adminToken = mesh.identity.issueToken({ id: admin.id, kind: "user", tenantId: tenant.id, permissions: new Set(effectivePermissions(["system:admin"])), authTime: Math.floor(Date.now() / 1000) - 5 });
    const users = clientFor(UserService, mesh.identity.baseUrl, adminToken, "grpc", { "x-forwarded-for": "10.7.7.7", "user-agent": "AdminBrowser/7.7" });
    await users.updateUser({ userId: target.id, displayName: "Xavier Renamed", updateMask: { paths: ["display_name"] } });
    let updated: AuditEntry | undefined;
    await eventually(async () => {
      updated = (await auditUser(mesh, tenant.id).listEntries({ action: "identity.user.updated", actorId: admin.id, resourceId: target.id, pageSize: 10 })).entries[0];
      return updated !== undefined;
    }, 15_000);
    assert.equal(updated!.sourceIp?.subjectId, admin.id, "the admin's address, under the admin's key");
    assert.equal(updated!.userAgent?.subjectId, admin.id);
    const name = updated!.changedFields.find((f) => f.name.endsWith("display_name"));
    assert.equal(name?.newValue?.kind.case === "sealed" ? name.newValue.kind.value.subjectId : undefined, target.id, "the new name, under the target's key");

    const a = auditUser(mesh, tenant.id);
    const nameOf = (personal: Record<string, string>): string | undefined => Object.entries(personal).find(([path]) => path.includes("display_name"))?.[1];
    const before = await a.getEntry({ entryId: updated!.entryId, decrypt: true });
    assert.deepEqual([before.personal["source_ip"], before.personal["user_agent"], nameOf(before.personal)], ["10.7.7.7", "AdminBrowser/7.7", "Xavier Renamed"]);

    const dpo = clientFor(EncryptionService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: "usr_dpo", kind: "user", tenantId: tenant.id, permissions: new Set(["keys.subject_keys.destroy"]) }));
    await dpo.destroySubjectKey({ subjectId: target.id, reason: "erasure request" });
    const targetErased = await a.getEntry({ entryId: updated!.entryId, decrypt: true });
    assert.equal(nameOf(targetErased.personal), undefined, "the erased user's values no longer open");
    assert.deepEqual([targetErased.personal["source_ip"], targetErased.personal["user_agent"]], ["10.7.7.7", "AdminBrowser/7.7"], "who acted from where is still readable");
    assert.deepEqual(targetErased.entry, updated, "the entry itself is unchanged");

    await dpo.destroySubjectKey({ subjectId: admin.id, reason: "erasure request" });
    const adminErased = await a.getEntry({ entryId: updated!.entryId, decrypt: true });
    assert.deepEqual(adminErased.personal, {}, "erasing the admin shreds their address and user agent");
    assert.deepEqual(adminErased.entry, updated);
    const { verifierKey } = await a.getVerifierKey({});
    const cp = openCheckpoint((await a.getCheckpoint({ refresh: true })).checkpoint, parseVerifierKey(verifierKey));
    const [row] = await auditQuery<{ leaf: Buffer }>(mesh, "select leaf from $schema.entries where entry_id = $1", [updated!.entryId]);
    const p = await a.getInclusionProof({ leaf: { case: "leafIndex", value: updated!.leafIndex }, treeSize: BigInt(cp.size) });
    assert.ok(verifyInclusion(Number(updated!.leafIndex), cp.size, leafHash(row!.leaf), p.hashes, cp.rootHash), "the entry still proves");
  });
});
