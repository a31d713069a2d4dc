/**
 * Contract of bulwark.keys.v1.ApiKeyService against real tenancy, identity
 * and keys servers on Postgres and NATS: every RPC's success and its
 * documented errors, the key format, the bound by the creator's current
 * permissions, rotation with overlap and rollback, limits (a usage cap that
 * holds exactly across two keys replicas), exposure reports that answer the
 * same whatever they carry, and no secret in events or errors.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { ApiKeyService, ApiKeyState, Environment, RoleService, TenancyService, UserService } from "@bulwark/contracts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateApiKeyRequestSchema } from "@bulwark/contracts";
import { apiKeyChecksum, apiKeyPattern, apiKeyScopeAliases, parseApiKey } from "@bulwark/core";
import { nuid } from "@nats-io/nuid";
import { bootstrapToken, clientFor, eventually } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { apiKeysAs, keysEvents, keysQuery, keysTenant, keysUser, startKeysMesh, userPrincipal, verifierOn, type KeysMesh } from "./support-apikeys.js";

const developer = "system:developer";
const admin = "system:admin";

describe("ApiKeyService", () => {
  let mesh: KeysMesh;
  let tenantId: string;
  /** Every full key the tests saw; none may appear in an event or an error. */
  const secrets = new Set<string>();

  before(async () => {
    mesh = await startKeysMesh();
    tenantId = await keysTenant(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  async function newKey(user: Awaited<ReturnType<typeof keysUser>>, fields: Partial<Omit<MessageInitShape<typeof CreateApiKeyRequestSchema>, "$typeName">> = {}) {
    const res = await apiKeysAs(mesh, userPrincipal(user)).createApiKey({ name: "ci deploys", environment: Environment.LIVE, scopes: ["read"], ...fields });
    assert.ok(res.key !== undefined);
    secrets.add(res.token);
    return res;
  }

  test("CreateApiKey returns a checksummed bwk_ key once; Get and List show metadata only; VerifyApiKey names the principal", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { key: apiKey, token: key } = await newKey(dev, { metadata: { team: "platform" }, environment: Environment.TEST });
    assert.match(key, /^bwk_test_[0-9A-Za-z]{16}_[0-9A-Za-z]{38}$/);
    assert.equal([...key.matchAll(apiKeyPattern)].length, 1);
    const parsed = parseApiKey(key);
    assert.equal(parsed?.id, apiKey!.id);
    assert.equal(apiKey!.prefix, key.slice(0, "bwk_test_".length + 16));
    assert.equal(apiKey!.ownerUserId, dev.id);
    assert.equal(apiKey!.state, ApiKeyState.ACTIVE);
    assert.deepEqual(apiKey!.scopes, ["read"]);
    // 90 days by default (the policy's api_key_max_lifetime).
    assert.equal(Number(apiKey!.expireTime!.seconds - apiKey!.createTime!.seconds), 90 * 86_400);
    const stored = await keysQuery<{ secret_hash: Buffer }>(mesh, "select secret_hash from $schema.api_keys where id = $1", [apiKey!.id]);
    assert.equal(stored[0]!.secret_hash.length, 32, "only the 32-byte HMAC is stored");

    const asDev = apiKeysAs(mesh, userPrincipal(dev));
    const got = await asDev.getApiKey({ keyId: apiKey!.id });
    assert.equal(got.key?.name, "ci deploys");
    assert.doesNotMatch(JSON.stringify(got.key, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)), new RegExp(parsed!.secret));
    const listed = await asDev.listApiKeys({ ownerUserId: dev.id });
    assert.deepEqual(listed.keys.map((k) => k.id), [apiKey!.id]);

    const v = await verifierOn(mesh.keys).verifyApiKey({ token: key });
    assert.equal(v.tenantId, tenantId);
    assert.equal(v.keyId, apiKey!.id);
    assert.equal(v.ownerUserId, dev.id);
    assert.deepEqual(v.metadata, { team: "platform" });
    assert.equal(v.environment, Environment.TEST);
    // `read` as the developer holds it: reads only.
    assert.ok(v.permissions.length > 0 && v.permissions.every((p) => p.endsWith(".read") || p.endsWith(".list")), v.permissions.join());
    await eventually(async () => (await asDev.getApiKey({ keyId: apiKey!.id })).key?.lastUsedTime !== undefined, 5_000);
  });

  test("CreateApiKey refuses unknown scopes, lifetimes beyond the policy, non-users, stale authentication and callers without the permission", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const asDev = apiKeysAs(mesh, userPrincipal(dev));
    await refusedWith(asDev.createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read", "everything"] }), Code.InvalidArgument, "scopes[1]");
    await refusedWith(asDev.createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["identity.password.self"] }), Code.InvalidArgument, "scopes[0]");
    await refusedWith(asDev.createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read"], lifetime: { seconds: BigInt(91 * 86_400), nanos: 0 } }), Code.InvalidArgument, "lifetime");
    await refusedWith(asDev.createApiKey({ name: "x", environment: Environment.UNSPECIFIED, scopes: ["read"] }), Code.InvalidArgument, "environment");
    await refusedWith(asDev.createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read"], metadata: { "bad key!": "v" } }), Code.InvalidArgument, "metadata");
    await refusedWith(apiKeysAs(mesh, userPrincipal(dev, 3_600)).createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read"] }), Code.FailedPrecondition, "re-authentication required");
    await refusedWith(clientFor(ApiKeyService, mesh.keys.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantId }).createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read"] }), Code.FailedPrecondition, "users");
    const member = await keysUser(mesh, tenantId, ["system:member"]);
    await refusedWith(apiKeysAs(mesh, userPrincipal(member)).createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read"] }), Code.PermissionDenied);
    await refusedWith(clientFor(ApiKeyService, mesh.keys.baseUrl).createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["read"] }), Code.Unauthenticated);
    // The creator holds none of the named permissions.
    await refusedWith(asDev.createApiKey({ name: "x", environment: Environment.LIVE, scopes: ["tenancy.policies.update"] }), Code.FailedPrecondition, "none of the permissions");
  });

  test("a key never holds more than its creator, follows a demotion, and a later promotion does not widen it beyond its scopes", async () => {
    const owner = await keysUser(mesh, tenantId, [admin]);
    const { token: key } = await newKey(owner, { scopes: ["admin"] });
    const verifier = verifierOn(mesh.keys);
    const before = new Set((await verifier.verifyApiKey({ token: key })).permissions);
    assert.ok(before.has("identity.roles.assign") && before.has("tenancy.policies.update"));
    assert.ok(!before.has("identity.roles.assign_owner"), "an Admin's admin key lacks what the Admin lacks");
    assert.ok([...before].every((p) => apiKeyScopeAliases.admin.includes(p)));

    const dev = await keysUser(mesh, tenantId, [developer]);
    const devKey = (await newKey(dev, { scopes: ["admin"] })).token;
    const devPerms = (await verifier.verifyApiKey({ token: devKey })).permissions;
    assert.ok(!devPerms.includes("identity.roles.assign") && devPerms.includes("keys.api_keys.create"), "capped by the developer's own permissions");

    // Demote the Admin to Developer: the key shrinks at once.
    const ops = clientFor(RoleService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantId });
    await ops.assignRole({ userId: owner.id, roleId: developer });
    await ops.revokeRole({ userId: owner.id, roleId: admin });
    await eventually(async () => !(await verifier.verifyApiKey({ token: key })).permissions.includes("identity.roles.assign"), 5_000, 25);
    // A promotion back to Admin restores at most what the key was granted at creation; promoting the developer to Owner adds nothing beyond what they held.
    await ops.assignRole({ userId: dev.id, roleId: "system:owner" });
    await eventually(async () => (await verifier.verifyApiKey({ token: devKey, refreshPermissions: true })).permissions.length > 0, 5_000);
    assert.deepEqual((await verifier.verifyApiKey({ token: devKey, refreshPermissions: true })).permissions, devPerms);
  });

  test("VerifyApiKey refuses wrong secrets, bad checksums, other tenants' principals and callers without the permission, alike", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { token: key } = await newKey(dev);
    const verifier = verifierOn(mesh.keys);
    const parsed = parseApiKey(key)!;
    const body = `bwk_live_${parsed.id.slice(4)}_${"A".repeat(32)}`;
    const forged = body + apiKeyChecksum(body);
    const flipped = key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");
    const messages = new Set<string>();
    for (const bad of [forged, flipped, "bwk_live_nothing", `bwk_test_${key.slice(9)}`]) messages.add((await refusedWith(verifier.verifyApiKey({ token: bad }), Code.Unauthenticated)).rawMessage);
    assert.equal(messages.size, 1, "every refusal says the same");
    const other = await keysTenant(mesh);
    const stranger = apiKeysAs(mesh, { id: "usr_x", kind: "user", tenantId: other, permissions: new Set(["keys.api_keys.verify"]) });
    await refusedWith(stranger.verifyApiKey({ token: key }), Code.Unauthenticated);
    const sameTenant = apiKeysAs(mesh, { id: dev.id, kind: "user", tenantId, permissions: new Set(["keys.api_keys.verify"]) });
    assert.equal((await sameTenant.verifyApiKey({ token: key })).tenantId, tenantId);
    await refusedWith(apiKeysAs(mesh, userPrincipal(dev, 10, ["keys.api_keys.read"])).verifyApiKey({ token: key }), Code.PermissionDenied);
    await refusedWith(verifier.verifyApiKey({ token: "" }), Code.InvalidArgument, "token");
  });

  test("UpdateApiKey renames and relabels; refuses other fields, revoked keys and a caller less privileged than the key", async () => {
    const adminUser = await keysUser(mesh, tenantId, [admin]);
    const { key: apiKey, token: key } = await newKey(adminUser, { scopes: ["write"] });
    const asAdmin = apiKeysAs(mesh, userPrincipal(adminUser));
    const updated = await asAdmin.updateApiKey({ keyId: apiKey!.id, name: "nightly", metadata: { env: "ci" }, updateMask: { paths: ["name", "metadata"] } });
    assert.equal(updated.key?.name, "nightly");
    assert.deepEqual(updated.key?.metadata, { env: "ci" });
    assert.deepEqual((await verifierOn(mesh.keys).verifyApiKey({ token: key })).metadata, { env: "ci" });
    await refusedWith(asAdmin.updateApiKey({ keyId: apiKey!.id, updateMask: { paths: ["scopes"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(asAdmin.updateApiKey({ keyId: "key_missing", name: "n", updateMask: { paths: ["name"] } }), Code.NotFound);
    const dev = await keysUser(mesh, tenantId, [developer]);
    await refusedWith(apiKeysAs(mesh, userPrincipal(dev)).updateApiKey({ keyId: apiKey!.id, name: "mine", updateMask: { paths: ["name"] } }), Code.PermissionDenied, "lacks");
    await asAdmin.revokeApiKey({ keyId: apiKey!.id });
    await refusedWith(asAdmin.updateApiKey({ keyId: apiKey!.id, name: "n", updateMask: { paths: ["name"] } }), Code.FailedPrecondition, "revoked");
  });

  test("RevokeApiKey stops the key at once, is idempotent, and another tenant's key is NOT_FOUND", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { key: apiKey, token: key } = await newKey(dev);
    const asDev = apiKeysAs(mesh, userPrincipal(dev));
    const verifier = verifierOn(mesh.keys);
    await verifier.verifyApiKey({ token: key });
    const revoked = await asDev.revokeApiKey({ keyId: apiKey!.id });
    assert.equal(revoked.key?.state, ApiKeyState.REVOKED);
    assert.equal(revoked.key?.revokeReason, "revoked");
    await refusedWith(verifier.verifyApiKey({ token: key }), Code.Unauthenticated);
    assert.equal((await asDev.revokeApiKey({ keyId: apiKey!.id })).key?.state, ApiKeyState.REVOKED);
    assert.deepEqual((await asDev.listApiKeys({ ownerUserId: dev.id })).keys, []);
    assert.equal((await asDev.listApiKeys({ ownerUserId: dev.id, includeInactive: true })).keys.length, 1);
    const other = await keysTenant(mesh);
    const outsider = await keysUser(mesh, other, [developer]);
    await refusedWith(apiKeysAs(mesh, userPrincipal(outsider)).revokeApiKey({ keyId: apiKey!.id }), Code.NotFound);
    await refusedWith(apiKeysAs(mesh, userPrincipal(outsider)).getApiKey({ keyId: apiKey!.id }), Code.NotFound);
    await refusedWith(asDev.getApiKey({ keyId: "usr_nope" }), Code.InvalidArgument, "key_id");
  });

  test("ListApiKeys pages newest first and refuses a page token of other filters", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    for (let i = 0; i < 3; i++) await newKey(dev, { name: `k${i}` });
    const asDev = apiKeysAs(mesh, userPrincipal(dev));
    const first = await asDev.listApiKeys({ ownerUserId: dev.id, pageSize: 2 });
    assert.deepEqual(first.keys.map((k) => k.name), ["k2", "k1"]);
    const second = await asDev.listApiKeys({ ownerUserId: dev.id, pageSize: 2, pageToken: first.nextPageToken });
    assert.deepEqual(second.keys.map((k) => k.name), ["k0"]);
    assert.equal(second.nextPageToken, "");
    await refusedWith(asDev.listApiKeys({ pageToken: first.nextPageToken }), Code.InvalidArgument, "page_token");
    await refusedWith(asDev.listApiKeys({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
  });

  test("RotateApiKey keeps the old key working until its deadline and can be rolled back before it", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { key: apiKey, token: oldKey } = await newKey(dev);
    const asDev = apiKeysAs(mesh, userPrincipal(dev));
    const verifier = verifierOn(mesh.keys);
    const rotated = await asDev.rotateApiKey({ keyId: apiKey!.id, overlap: { seconds: 3_600n, nanos: 0 } });
    secrets.add(rotated.token);
    assert.notEqual(rotated.key?.id, apiKey!.id);
    assert.equal(rotated.previous?.rotation?.otherKeyId, rotated.key?.id);
    assert.equal(rotated.key?.rotation?.otherKeyId, apiKey!.id);
    assert.equal((await verifier.verifyApiKey({ token: oldKey })).keyId, apiKey!.id, "the old key works during the overlap");
    assert.equal((await verifier.verifyApiKey({ token: rotated.token })).keyId, rotated.key?.id);
    await refusedWith(asDev.rotateApiKey({ keyId: apiKey!.id }), Code.FailedPrecondition, "already being rotated");

    const rolledBack = await asDev.rollbackApiKeyRotation({ keyId: apiKey!.id });
    assert.equal(rolledBack.key?.rotation, undefined);
    await refusedWith(verifier.verifyApiKey({ token: rotated.token }), Code.Unauthenticated);
    assert.equal((await verifier.verifyApiKey({ token: oldKey })).keyId, apiKey!.id);
    assert.equal((await asDev.getApiKey({ keyId: rotated.key!.id })).key?.revokeReason, "rotation_rolled_back");
    await refusedWith(asDev.rollbackApiKeyRotation({ keyId: apiKey!.id }), Code.FailedPrecondition, "not being rotated");

    // Without overlap the old key stops at once, and the rotation can no longer be undone; housekeeping revokes it.
    const now = await asDev.rotateApiKey({ keyId: apiKey!.id, overlap: { seconds: 0n, nanos: 0 } });
    secrets.add(now.token);
    await refusedWith(verifier.verifyApiKey({ token: oldKey }), Code.Unauthenticated);
    assert.equal((await verifier.verifyApiKey({ token: now.token })).keyId, now.key?.id);
    await refusedWith(asDev.rollbackApiKeyRotation({ keyId: apiKey!.id }), Code.FailedPrecondition, "deadline has passed");
    await eventually(async () => {
      await mesh.keys.running.scheduler.tick();
      return (await asDev.getApiKey({ keyId: apiKey!.id })).key?.revokeReason === "rotation_ended";
    }, 15_000, 100);
    await refusedWith(asDev.rotateApiKey({ keyId: apiKey!.id }), Code.FailedPrecondition, "revoked or expired");
    await refusedWith(asDev.rotateApiKey({ keyId: "key_missing" }), Code.NotFound);
  });

  test("a usage cap holds exactly with two keys replicas, and is shared with a rotation's successor", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { token: key, key: apiKey } = await newKey(dev, { usageLimit: 25n });
    assert.equal(apiKey!.remainingUses, 25n);
    const replica = await mesh.startReplica();
    const verifiers = [verifierOn(mesh.keys), verifierOn(replica)];
    const outcomes = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        verifiers[i % 2]!.verifyApiKey({ token: key }).then(
          (r) => ({ ok: true, cacheFor: Number(r.cacheFor?.seconds ?? 0n) }),
          (e: unknown) => ({ ok: false, code: (e as { code?: Code }).code }),
        ),
      ),
    );
    assert.equal(outcomes.filter((o) => o.ok).length, 25, "exactly the cap succeeds across both replicas");
    assert.ok(outcomes.filter((o) => !o.ok).every((o) => (o as { code?: Code }).code === Code.ResourceExhausted));
    assert.ok(outcomes.filter((o) => o.ok).every((o) => (o as { cacheFor: number }).cacheFor === 0), "a capped key must not be cached by verifiers");
    const asDev = apiKeysAs(mesh, userPrincipal(dev));
    assert.equal((await asDev.getApiKey({ keyId: apiKey!.id })).key?.remainingUses, 0n);

    const capped = await newKey(dev, { usageLimit: 3n });
    await verifiers[0]!.verifyApiKey({ token: capped.token });
    const successor = await asDev.rotateApiKey({ keyId: capped.key!.id });
    secrets.add(successor.token);
    await verifiers[1]!.verifyApiKey({ token: successor.token });
    await verifiers[0]!.verifyApiKey({ token: capped.token });
    await refusedWith(verifiers[1]!.verifyApiKey({ token: successor.token }), Code.ResourceExhausted, "usage limit");
  });

  test("a rate limit refuses verifications beyond it within the window", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { token: key } = await newKey(dev, { rateLimit: { limit: 3, window: { seconds: 60n, nanos: 0 } } });
    const verifier = verifierOn(mesh.keys);
    for (let i = 0; i < 3; i++) await verifier.verifyApiKey({ token: key });
    await refusedWith(verifier.verifyApiKey({ token: key }), Code.ResourceExhausted, "rate limit");
  });

  test("the keys of a suspended or deleted user are revoked", async () => {
    const a = await keysUser(mesh, tenantId, [developer]);
    const b = await keysUser(mesh, tenantId, [developer]);
    const ka = await newKey(a);
    const kb = await newKey(b);
    const users = clientFor(UserService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": tenantId });
    await users.suspendUser({ userId: a.id, reason: "left the company" });
    await users.deleteUser({ userId: b.id });
    const verifier = verifierOn(mesh.keys);
    await eventually(async () => (await keysQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.api_keys where id in ($1, $2) and state = 'revoked'", [ka.key!.id, kb.key!.id]))[0]!.n === 2, 10_000);
    await refusedWith(verifier.verifyApiKey({ token: ka.token }), Code.Unauthenticated);
    await refusedWith(verifier.verifyApiKey({ token: kb.token }), Code.Unauthenticated);
    const reasons = await keysQuery<{ revoke_reason: string }>(mesh, "select revoke_reason from $schema.api_keys where id in ($1, $2) order by revoke_reason", [ka.key!.id, kb.key!.id]);
    assert.deepEqual(reasons.map((r) => r.revoke_reason), ["owner_deleted", "owner_suspended"]);
  });

  test("owners are warned seven days before a key expires, once, by the scheduler's housekeeping job", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const { key: apiKey } = await newKey(dev, { lifetime: { seconds: BigInt(3 * 86_400), nanos: 0 } });
    const far = await newKey(dev);
    await eventually(async () => {
      await mesh.keys.running.scheduler.tick();
      return (await keysEvents(mesh)).some((e) => e.type === "key.expiring" && e.aggregateId === apiKey!.id);
    }, 15_000, 100);
    // Later runs (later periods) warn nobody twice.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1_100));
      await mesh.keys.running.scheduler.tick();
    }
    const events = await keysEvents(mesh);
    assert.equal(events.filter((e) => e.type === "key.expiring" && e.aggregateId === apiKey!.id).length, 1);
    assert.ok(!events.some((e) => e.type === "key.expiring" && e.aggregateId === far.key!.id));
    assert.equal(events.find((e) => e.type === "key.expiring")?.tenantId, tenantId);
  });

  test("ReportExposedKeys answers identically for live, revoked and random strings, and revokes the live key for its owner", async () => {
    const dev = await keysUser(mesh, tenantId, [developer]);
    const live = await newKey(dev);
    const gone = await newKey(dev);
    await apiKeysAs(mesh, userPrincipal(dev)).revokeApiKey({ keyId: gone.key!.id });
    const anonymous = clientFor(ApiKeyService, mesh.keys.baseUrl);
    const answers = [];
    for (const token of [live.token, gone.token, `bwk_live_${nuid.next()}`, "hello world"]) {
      answers.push(JSON.stringify(await anonymous.reportExposedKeys({ keys: [{ token, type: "bulwark_api_key", url: "https://github.com/acme/app/blob/main/.env", source: "content" }] })));
    }
    assert.equal(new Set(answers).size, 1, answers.join(" | "));
    await eventually(async () => (await keysQuery<{ revoke_reason: string | null }>(mesh, "select revoke_reason from $schema.api_keys where id = $1", [live.key!.id]))[0]?.revoke_reason === "exposed", 5_000);
    await refusedWith(verifierOn(mesh.keys).verifyApiKey({ token: live.token }), Code.Unauthenticated);
    const exposed = (await keysEvents(mesh)).filter((e) => e.type === "key.exposed");
    assert.deepEqual(exposed.map((e) => e.aggregateId), [live.key!.id]);
    assert.ok(Buffer.from(exposed[0]!.payload).includes(Buffer.from(dev.id)), "the event names the owner to notify");
    await refusedWith(anonymous.reportExposedKeys({ keys: Array.from({ length: 101 }, () => ({ token: "x", type: "", url: "", source: "" })) }), Code.InvalidArgument, "keys");
  });

  test("no secret appears in any event keys recorded or in its errors", async () => {
    const events = await keysEvents(mesh);
    assert.ok(events.length > 10);
    for (const full of secrets) {
      const secret = parseApiKey(full)!.secret;
      for (const e of events) {
        assert.ok(!e.bytes.includes(Buffer.from(secret)), `${e.type} carries a secret`);
        assert.ok(!e.headers.includes(secret));
      }
      const err = await refusedWith(verifierOn(mesh.keys).verifyApiKey({ token: `${full}x` }), Code.Unauthenticated);
      assert.ok(!err.rawMessage.includes(secret));
    }
    // Tenancy's client is unused here but proves the mesh is one: its policy bounds the lifetime.
    assert.ok(clientFor(TenancyService, mesh.tenancy.baseUrl, bootstrapToken) !== undefined);
  });
});
