/**
 * The contract of bulwark.keys.v1.EncryptionService: every RPC through the
 * generated client against a real keys server (real Postgres and NATS,
 * tenancy beside it), its success case and each documented error.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { KeyRingKind, KeyState } from "@bulwark/contracts";
import { keysContext, parseCiphertext, rotationJob } from "@bulwark/keys";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { adminUrl, bootstrapToken, testDatabase } from "../support/harness.js";
import { refusedWith, secondsOf, day } from "./support-assert.js";
import { allKeysPermissions, keysAs, keysClients, keysEvents, keysQuery, newTenant, startKeysMesh, userOf, type KeysMesh } from "./support-keys.js";

let mesh: KeysMesh;
let tenantA: string;
let tenantB: string;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

before(async () => {
  mesh = await startKeysMesh();
  tenantA = await newTenant(mesh);
  tenantB = await newTenant(mesh);
});
after(async () => {
  await mesh?.stop();
});

describe("EncryptionService.Encrypt and Decrypt", () => {
  test("ciphertext names its format, key and version, and decrypts with the same purpose and context", async () => {
    const a = userOf(mesh, tenantA, allKeysPermissions).encryption;
    const enc = await a.encrypt({ plaintext: text("card 4111"), purpose: "billing.card", context: { row: "42" } });
    const parsed = parseCiphertext(enc.ciphertext);
    assert.equal(enc.ciphertext[0], 1);
    assert.equal(parsed.keyId, enc.keyId);
    assert.equal(parsed.version, enc.keyVersion);
    assert.ok(enc.keyId.startsWith("kr_"));
    assert.equal(parsed.nonce.length, 12);
    const dec = await a.decrypt({ ciphertext: enc.ciphertext, purpose: "billing.card", context: { row: "42" } });
    assert.equal(Buffer.from(dec.plaintext).toString(), "card 4111");
    const again = await a.encrypt({ plaintext: text("card 4111"), purpose: "billing.card", context: { row: "42" } });
    assert.notDeepEqual(Buffer.from(again.ciphertext), Buffer.from(enc.ciphertext), "a fresh nonce every time");
  });

  test("a wrong purpose, context, altered byte or another tenant does not decrypt", async () => {
    const a = userOf(mesh, tenantA, allKeysPermissions).encryption;
    const b = userOf(mesh, tenantB, allKeysPermissions).encryption;
    const { ciphertext } = await a.encrypt({ plaintext: text("secret"), purpose: "notes", context: { id: "1" } });
    await refusedWith(a.decrypt({ ciphertext, purpose: "other", context: { id: "1" } }), Code.InvalidArgument, "does not decrypt");
    await refusedWith(a.decrypt({ ciphertext, purpose: "notes", context: { id: "2" } }), Code.InvalidArgument, "does not decrypt");
    await refusedWith(a.decrypt({ ciphertext, purpose: "notes", context: {} }), Code.InvalidArgument, "does not decrypt");
    const altered = Buffer.from(ciphertext);
    altered[altered.length - 1]! ^= 1;
    await refusedWith(a.decrypt({ ciphertext: altered, purpose: "notes", context: { id: "1" } }), Code.InvalidArgument, "does not decrypt");
    await refusedWith(a.decrypt({ ciphertext: text("not ciphertext at all, just bytes"), purpose: "notes" }), Code.InvalidArgument, "does not decrypt");
    await refusedWith(b.decrypt({ ciphertext, purpose: "notes", context: { id: "1" } }), Code.InvalidArgument, "does not decrypt");
  });

  test("rings are isolated by row-level security: another tenant's scope sees none of them", async () => {
    await userOf(mesh, tenantA, allKeysPermissions).encryption.encrypt({ plaintext: text("x"), purpose: "p" });
    const url = new URL(adminUrl);
    url.username = `${mesh.keys.config.DATABASE_SCHEMA}_app`;
    url.pathname = `/${testDatabase}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      await client.query("begin");
      await client.query(`set local search_path to "${mesh.keys.config.DATABASE_SCHEMA}"`);
      await client.query("select set_config('app.tenant_id', $1, true)", [tenantB]);
      const seen = await client.query("select count(*)::int as n from key_rings where tenant_id = $1", [tenantA]);
      assert.equal(seen.rows[0].n, 0);
      const versions = await client.query("select count(*)::int as n from key_versions where tenant_id = $1", [tenantA]);
      assert.equal(versions.rows[0].n, 0);
      await client.query("rollback");
    } finally {
      await client.end();
    }
    const all = await keysQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.key_rings where tenant_id = $1", [tenantA]);
    assert.ok(all[0]!.n >= 1);
  });

  test("the edge refuses a bad purpose, an oversized plaintext and an oversized context", async () => {
    const a = userOf(mesh, tenantA, allKeysPermissions).encryption;
    await refusedWith(a.encrypt({ plaintext: text("x"), purpose: "Not A Purpose" }), Code.InvalidArgument, "purpose");
    await refusedWith(a.encrypt({ plaintext: text("x"), purpose: "" }), Code.InvalidArgument, "purpose");
    await refusedWith(a.encrypt({ plaintext: new Uint8Array(65537), purpose: "p" }), Code.InvalidArgument, "plaintext");
    const context = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    await refusedWith(a.encrypt({ plaintext: text("x"), purpose: "p", context }), Code.InvalidArgument, "context");
    await refusedWith(a.encrypt({ plaintext: text("x"), purpose: "p", subjectId: "has space" }), Code.InvalidArgument, "subject_id");
    await refusedWith(a.decrypt({ ciphertext: new Uint8Array(), purpose: "p" }), Code.InvalidArgument, "ciphertext");
  });

  test("without a credential UNAUTHENTICATED; without the permission PERMISSION_DENIED", async () => {
    const anon = keysClients(mesh.keys.baseUrl, undefined).encryption;
    await refusedWith(anon.encrypt({ plaintext: text("x"), purpose: "p" }), Code.Unauthenticated);
    const none = userOf(mesh, tenantA, []).encryption;
    await refusedWith(none.encrypt({ plaintext: text("x"), purpose: "p" }), Code.PermissionDenied, "keys.encryption.encrypt");
    await refusedWith(none.decrypt({ ciphertext: text("x"), purpose: "p" }), Code.PermissionDenied, "keys.encryption.decrypt");
    await refusedWith(none.rewrap({ ciphertext: text("x"), purpose: "p" }), Code.PermissionDenied, "keys.encryption.rewrap");
    await refusedWith(none.encryptBatch({ items: [{ plaintext: text("x"), purpose: "p" }] }), Code.PermissionDenied);
    await refusedWith(none.decryptBatch({ items: [{ ciphertext: text("x"), purpose: "p" }] }), Code.PermissionDenied);
    await refusedWith(none.generateDataKey({ purpose: "p" }), Code.PermissionDenied);
    await refusedWith(none.getKeyRing({}), Code.PermissionDenied, "keys.encryption.read");
    await refusedWith(none.rotateKey({}), Code.PermissionDenied, "keys.encryption.rotate");
    await refusedWith(none.setMinimumDecryptionVersion({ version: 1 }), Code.PermissionDenied, "keys.encryption.rotate");
    await refusedWith(none.destroyKey({ keyId: "kr_x" }), Code.PermissionDenied, "keys.encryption.destroy");
    await refusedWith(none.destroySubjectKey({ subjectId: "usr_x" }), Code.PermissionDenied, "keys.subject_keys.destroy");
  });

  test("an operator names the tenant with bulwark-tenant; without it the call names no tenant", async () => {
    const op = keysClients(mesh.keys.baseUrl, bootstrapToken).encryption;
    await refusedWith(op.encrypt({ plaintext: text("x"), purpose: "p" }), Code.PermissionDenied, "names no tenant");
    const inA = keysClients(mesh.keys.baseUrl, bootstrapToken, { "bulwark-tenant": tenantA }).encryption;
    const enc = await inA.encrypt({ plaintext: text("ops"), purpose: "p" });
    const dec = await userOf(mesh, tenantA, allKeysPermissions).encryption.decrypt({ ciphertext: enc.ciphertext, purpose: "p" });
    assert.equal(Buffer.from(dec.plaintext).toString(), "ops");
  });

  test("a service's own ring is for that service calling as itself only", async () => {
    const identity = keysAs(mesh, { id: "svc_identity", kind: "service", permissions: new Set(["keys.encryption.encrypt", "keys.encryption.decrypt"]) }).encryption;
    const enc = await identity.encrypt({ plaintext: text("signing key"), purpose: "identity.signing_key", serviceRing: true });
    const dec = await identity.decrypt({ ciphertext: enc.ciphertext, purpose: "identity.signing_key" });
    assert.equal(Buffer.from(dec.plaintext).toString(), "signing key");
    const audit = keysAs(mesh, { id: "svc_audit", kind: "service", permissions: new Set(["*"]) }).encryption;
    await refusedWith(audit.decrypt({ ciphertext: enc.ciphertext, purpose: "identity.signing_key" }), Code.InvalidArgument, "does not decrypt");
    const user = userOf(mesh, tenantA, allKeysPermissions).encryption;
    await refusedWith(user.encrypt({ plaintext: text("x"), purpose: "p", serviceRing: true }), Code.PermissionDenied, "service_ring");
    await refusedWith(user.decrypt({ ciphertext: enc.ciphertext, purpose: "identity.signing_key" }), Code.InvalidArgument, "does not decrypt");
    await refusedWith(identity.encrypt({ plaintext: text("x"), purpose: "p", serviceRing: true, subjectId: "usr_1" }), Code.InvalidArgument, "subject_id");
  });
});

describe("EncryptionService key versions", () => {
  test("a rotated key still decrypts old ciphertext until the minimum version passes it; rewrap yields the newest version", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    const old = await k.encrypt({ plaintext: text("v1 data"), purpose: "p", context: { a: "b" } });
    assert.equal(old.keyVersion, 1);
    const rotated = await k.rotateKey({});
    assert.equal(rotated.keyRing?.currentVersion, 2);
    assert.equal(rotated.keyRing?.versions.length, 2);
    const fresh = await k.encrypt({ plaintext: text("v2 data"), purpose: "p" });
    assert.equal(fresh.keyVersion, 2);
    assert.equal(Buffer.from((await k.decrypt({ ciphertext: old.ciphertext, purpose: "p", context: { a: "b" } })).plaintext).toString(), "v1 data");

    const rewrapped = await k.rewrap({ ciphertext: old.ciphertext, purpose: "p", context: { a: "b" } });
    assert.equal(rewrapped.keyVersion, 2);
    assert.equal(rewrapped.previousKeyVersion, 1);
    assert.equal(parseCiphertext(rewrapped.ciphertext).version, 2);
    assert.equal(Object.keys(rewrapped).includes("plaintext"), false);

    const min = await k.setMinimumDecryptionVersion({ version: 2 });
    assert.equal(min.keyRing?.minimumDecryptionVersion, 2);
    assert.equal(min.keyRing?.versions[0]?.state, KeyState.DISABLED);
    await refusedWith(k.decrypt({ ciphertext: old.ciphertext, purpose: "p", context: { a: "b" } }), Code.FailedPrecondition, "key version disabled");
    await refusedWith(k.rewrap({ ciphertext: old.ciphertext, purpose: "p", context: { a: "b" } }), Code.FailedPrecondition, "key version disabled");
    assert.equal(Buffer.from((await k.decrypt({ ciphertext: rewrapped.ciphertext, purpose: "p", context: { a: "b" } })).plaintext).toString(), "v1 data");

    await k.setMinimumDecryptionVersion({ version: 1 });
    assert.equal(Buffer.from((await k.decrypt({ ciphertext: old.ciphertext, purpose: "p", context: { a: "b" } })).plaintext).toString(), "v1 data");
    await refusedWith(k.setMinimumDecryptionVersion({ version: 3 }), Code.InvalidArgument, "version");
    await refusedWith(k.setMinimumDecryptionVersion({ version: 0 }), Code.InvalidArgument, "version");
    const types = (await keysEvents(mesh, tenant)).map((e) => e.type);
    assert.ok(types.includes("key_ring.rotated") && types.includes("key_ring.minimum_version_changed"), types.join(","));
  });

  test("GetKeyRing describes the ring and its rotation by the tenant policy's period", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    const { keyRing } = await k.getKeyRing({});
    assert.ok(keyRing !== undefined);
    assert.equal(keyRing.kind, KeyRingKind.TENANT);
    assert.equal(keyRing.tenantId, tenant);
    assert.equal(keyRing.state, KeyState.ENABLED);
    assert.equal(keyRing.currentVersion, 1);
    assert.equal(secondsOf(keyRing.rotationPeriod), 365 * day);
    assert.equal(secondsOf(keyRing.nextRotateTime) - secondsOf(keyRing.rotateTime), 365 * day);
    assert.ok(keyRing.versions[0]?.masterKeyId !== "");
    const subject = await k.getKeyRing({ subjectId: "usr_someone" });
    assert.equal(subject.keyRing?.kind, KeyRingKind.SUBJECT);
    assert.equal(subject.keyRing?.subjectId, "usr_someone");
    assert.notEqual(subject.keyRing?.keyId, keyRing.keyId);
  });

  test("GetKeyRing with read_only answers NOT_FOUND for a ring that does not exist and creates none, and describes one that does", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    const rings = async () => Number((await keysQuery<{ n: string }>(mesh, "select count(*) as n from $schema.key_rings where tenant_id = $1", [tenant]))[0]?.n);
    assert.equal(await rings(), 0);
    await refusedWith(k.getKeyRing({ readOnly: true }), Code.NotFound, "key ring");
    await refusedWith(k.getKeyRing({ readOnly: true, subjectId: "usr_someone" }), Code.NotFound, "key ring");
    assert.equal(await rings(), 0, "a read-only describe created no ring");
    const created = (await k.getKeyRing({})).keyRing;
    assert.equal(await rings(), 1, "without read_only the ring is created");
    assert.equal((await k.getKeyRing({ readOnly: true })).keyRing?.keyId, created?.keyId);
    await refusedWith(userOf(mesh, tenant, ["keys.encryption.encrypt"]).encryption.getKeyRing({ readOnly: true }), Code.PermissionDenied, "keys.encryption.read");
  });

  test("rings rotate on their own once the policy's encryption_key_rotation_period has passed", async () => {
    const tenant = await newTenant(mesh);
    await mesh.tenancyOps.updateSecurityPolicy({ tenantId: tenant, policy: { encryptionKeyRotationPeriod: durationFromMs(2 * day * 1000) }, updateMask: { paths: ["encryption_key_rotation_period"] } });
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    const before = await k.encrypt({ plaintext: text("before"), purpose: "p" });
    const job = rotationJob(keysContext(mesh.keys.running.deps));
    await job.runOnce();
    assert.equal((await k.getKeyRing({})).keyRing?.currentVersion, 1, "not due yet");
    await keysQuery(mesh, "update $schema.key_rings set rotated_at = now() - interval '3 days' where id = $1", [before.keyId]);
    assert.equal(await job.runOnce(), true);
    const ring = (await k.getKeyRing({})).keyRing;
    assert.equal(ring?.currentVersion, 2);
    assert.equal(secondsOf(ring?.rotationPeriod), 2 * day);
    assert.equal(Buffer.from((await k.decrypt({ ciphertext: before.ciphertext, purpose: "p" })).plaintext).toString(), "before");
    assert.ok((await keysEvents(mesh, tenant)).some((e) => e.type === "key_ring.rotated"));
  });
});

describe("EncryptionService crypto-shredding", () => {
  test("a destroyed key decrypts nothing and encrypts nothing, for good", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    const v1 = await k.encrypt({ plaintext: text("one"), purpose: "p" });
    await k.rotateKey({});
    const v2 = await k.encrypt({ plaintext: text("two"), purpose: "p" });
    await refusedWith(userOf(mesh, tenantA, allKeysPermissions).encryption.destroyKey({ keyId: v1.keyId }), Code.NotFound, "key ring");
    const { keyRing } = await k.destroyKey({ keyId: v1.keyId, reason: "tenant erased" });
    assert.equal(keyRing?.state, KeyState.DESTROYED);
    assert.ok(keyRing?.versions.every((v) => v.state === KeyState.DESTROYED));
    for (const c of [v1, v2]) await refusedWith(k.decrypt({ ciphertext: c.ciphertext, purpose: "p" }), Code.FailedPrecondition, "key destroyed");
    await refusedWith(k.rewrap({ ciphertext: v2.ciphertext, purpose: "p" }), Code.FailedPrecondition, "key destroyed");
    await refusedWith(k.encrypt({ plaintext: text("three"), purpose: "p" }), Code.FailedPrecondition, "key destroyed");
    await refusedWith(k.rotateKey({}), Code.FailedPrecondition, "key destroyed");
    await refusedWith(k.destroyKey({ keyId: v1.keyId }), Code.FailedPrecondition, "already destroyed");
    await refusedWith(k.destroyKey({ keyId: "kr_doesnotexist" }), Code.NotFound, "key ring");
    const stored = await keysQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.key_versions where ring_id = $1 and wrapped_key is not null", [v1.keyId]);
    assert.equal(stored[0]!.n, 0, "no key material is left");
    assert.ok((await keysEvents(mesh, tenant)).some((e) => e.type === "key_ring.destroyed"));
  });

  test("destroying a data subject's key erases that subject only; a subject without a ring gets a tombstone", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    const alice = await k.encrypt({ plaintext: text("alice's address"), purpose: "crm.address", subjectId: "usr_alice" });
    const bob = await k.encrypt({ plaintext: text("bob's address"), purpose: "crm.address", subjectId: "usr_bob" });
    const shared = await k.encrypt({ plaintext: text("tenant data"), purpose: "crm.address" });
    assert.notEqual(alice.keyId, bob.keyId);
    assert.notEqual(alice.keyId, shared.keyId);
    const erased = await userOf(mesh, tenant, ["keys.subject_keys.destroy"]).encryption.destroySubjectKey({ subjectId: "usr_alice", reason: "erasure era_1" });
    assert.equal(erased.keyRing?.state, KeyState.DESTROYED);
    assert.equal(erased.keyRing?.subjectId, "usr_alice");
    await refusedWith(k.decrypt({ ciphertext: alice.ciphertext, purpose: "crm.address" }), Code.FailedPrecondition, "key destroyed");
    await refusedWith(k.encrypt({ plaintext: text("again"), purpose: "crm.address", subjectId: "usr_alice" }), Code.FailedPrecondition, "key destroyed");
    assert.equal(Buffer.from((await k.decrypt({ ciphertext: bob.ciphertext, purpose: "crm.address" })).plaintext).toString(), "bob's address");
    assert.equal(Buffer.from((await k.decrypt({ ciphertext: shared.ciphertext, purpose: "crm.address" })).plaintext).toString(), "tenant data");
    const again = await k.destroySubjectKey({ subjectId: "usr_alice" });
    assert.equal(again.keyRing?.keyId, erased.keyRing?.keyId, "idempotent");
    const never = await k.destroySubjectKey({ subjectId: "sub_never_seen" });
    assert.equal(never.keyRing?.state, KeyState.DESTROYED);
    await refusedWith(k.encrypt({ plaintext: text("x"), purpose: "p", subjectId: "sub_never_seen" }), Code.FailedPrecondition, "key destroyed");
    await refusedWith(k.destroySubjectKey({ subjectId: "" }), Code.InvalidArgument, "subject_id");
  });
});

describe("EncryptionService batches and data keys", () => {
  test("batch items succeed or fail on their own, in order", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).encryption;
    await k.destroySubjectKey({ subjectId: "usr_gone" });
    const enc = await k.encryptBatch({ items: [{ plaintext: text("a"), purpose: "p" }, { plaintext: text("b"), purpose: "p", subjectId: "usr_gone" }, { plaintext: text("c"), purpose: "q", subjectId: "usr_here" }] });
    assert.equal(enc.results.length, 3);
    assert.ok(enc.results[0]?.result !== undefined && enc.results[2]?.result !== undefined);
    assert.equal(enc.results[1]?.error?.code, Code.FailedPrecondition);
    assert.equal(enc.results[1]?.error?.message, "key destroyed");
    const dec = await k.decryptBatch({
      items: [
        { ciphertext: enc.results[0]!.result!.ciphertext, purpose: "p" },
        { ciphertext: enc.results[2]!.result!.ciphertext, purpose: "wrong" },
        { ciphertext: enc.results[2]!.result!.ciphertext, purpose: "q" },
      ],
    });
    assert.equal(Buffer.from(dec.results[0]!.result!.plaintext).toString(), "a");
    assert.equal(dec.results[1]?.error?.code, Code.InvalidArgument);
    assert.equal(Buffer.from(dec.results[2]!.result!.plaintext).toString(), "c");
    await refusedWith(k.encryptBatch({ items: Array.from({ length: 101 }, () => ({ plaintext: text("x"), purpose: "p" })) }), Code.InvalidArgument, "items");
    await refusedWith(k.encryptBatch({ items: Array.from({ length: 17 }, () => ({ plaintext: new Uint8Array(65536), purpose: "p" })) }), Code.InvalidArgument, "items");
    await refusedWith(k.encryptBatch({ items: [] }), Code.InvalidArgument, "items");
    await refusedWith(k.decryptBatch({ items: [] }), Code.InvalidArgument, "items");
  });

  test("GenerateDataKey returns a 256-bit key and the same key wrapped under the ring", async () => {
    const k = userOf(mesh, tenantA, allKeysPermissions).encryption;
    const dk = await k.generateDataKey({ purpose: "exports.bundle", context: { export: "exp_1" } });
    assert.equal(dk.plaintextKey.length, 32);
    const back = await k.decrypt({ ciphertext: dk.wrappedKey, purpose: "exports.bundle", context: { export: "exp_1" } });
    assert.deepEqual(Buffer.from(back.plaintext), Buffer.from(dk.plaintextKey));
    await refusedWith(k.decrypt({ ciphertext: dk.wrappedKey, purpose: "exports.bundle" }), Code.InvalidArgument, "does not decrypt");
    await refusedWith(k.generateDataKey({ purpose: "" }), Code.InvalidArgument, "purpose");
  });
});
