/**
 * The contracts of bulwark.keys.v1.SecretService (the credential vault) and
 * bulwark.keys.v1.WebhookService (webhook signing secrets), through the
 * generated clients against a real keys server; and the Standard Webhooks
 * helper of @bulwark/core against the `standardwebhooks` package a
 * receiver would use.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SecretReadSchema, SecretRotationDueSchema } from "@bulwark/contracts";
import { newWebhookSecret, signWebhook, verifyWebhook, WebhookVerificationError } from "@bulwark/core";
import { keysContext, reminderJob } from "@bulwark/keys";
import { Webhook } from "standardwebhooks";
import { refusedWith, secondsOf, day } from "./support-assert.js";
import { allKeysPermissions, keysEvents, keysQuery, newTenant, startKeysMesh, userOf, type KeysMesh } from "./support-keys.js";

let mesh: KeysMesh;
let tenantA: string;
let tenantB: string;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

before(async () => {
  mesh = await startKeysMesh();
  tenantA = await newTenant(mesh);
  tenantB = await newTenant(mesh);
});
after(async () => {
  await mesh?.stop();
});

describe("SecretService", () => {
  test("PutSecret adds versions; GetSecret returns the newest or a named one and records who read it", async () => {
    const tenant = await newTenant(mesh);
    const admin = userOf(mesh, tenant, allKeysPermissions, "usr_vaultadmin").secrets;
    const first = await admin.putSecret({ name: "smtp/password", value: bytes("hunter2-first"), description: "mail relay" });
    assert.equal(first.version, 1);
    assert.equal(first.secret?.name, "smtp/password");
    assert.ok(first.secret?.id.startsWith("sec_"));
    const second = await admin.putSecret({ name: "smtp/password", value: bytes("hunter2-second") });
    assert.equal(second.version, 2);
    assert.equal(second.secret?.description, "mail relay", "kept when not given");
    assert.equal(second.secret?.versionCount, 2);
    const reader = userOf(mesh, tenant, ["keys.secrets.read"], "usr_reader");
    const got = await reader.secrets.getSecret({ name: "smtp/password" });
    assert.equal(Buffer.from(got.value).toString(), "hunter2-second");
    assert.equal(got.version, 2);
    const old = await reader.secrets.getSecret({ name: "smtp/password", version: 1 });
    assert.equal(Buffer.from(old.value).toString(), "hunter2-first");
    const reads = (await keysEvents(mesh, tenant)).filter((e) => e.type === "secret.read");
    assert.equal(reads.length, 2);
    const payload = fromBinary(SecretReadSchema, reads[0]!.payload);
    assert.equal(payload.readerId, "usr_reader");
    assert.equal(reads[0]!.actorId, "usr_reader");
    assert.equal(payload.version, 2);
    const stored = await keysQuery<{ ciphertext: Buffer }>(mesh, "select ciphertext from $schema.secret_versions where secret_id = $1", [first.secret!.id]);
    for (const r of stored) assert.ok(!r.ciphertext.toString("latin1").includes("hunter2"), "stored only encrypted");
    await refusedWith(reader.secrets.getSecret({ name: "smtp/password", version: 9 }), Code.NotFound, "secret version");
    await refusedWith(reader.secrets.getSecret({ name: "missing" }), Code.NotFound, "secret");
  });

  test("List and ListSecretVersions return metadata only; Delete erases every version", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).secrets;
    for (const n of ["db-url", "llm/openai", "llm/anthropic"]) await k.putSecret({ name: n, value: bytes(`value-of-${n}`), rotationPeriod: durationFromMs(30 * day * 1000) });
    await k.putSecret({ name: "db-url", value: bytes("value-of-db-url-2") });
    const page1 = await k.listSecrets({ pageSize: 2 });
    assert.equal(page1.secrets.length, 2);
    assert.notEqual(page1.nextPageToken, "");
    const page2 = await k.listSecrets({ pageSize: 2, pageToken: page1.nextPageToken });
    assert.equal(page2.secrets.length, 1);
    assert.equal(page2.nextPageToken, "");
    const all = [...page1.secrets, ...page2.secrets];
    assert.deepEqual(all.map((s) => s.name).sort(), ["db-url", "llm/anthropic", "llm/openai"]);
    assert.equal(secondsOf(all[0]?.rotationPeriod), 30 * day);
    assert.ok(!JSON.stringify(all, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)).includes("value-of"));
    const versions = await k.listSecretVersions({ name: "db-url" });
    assert.deepEqual(versions.versions.map((v) => v.version), [2, 1]);
    assert.equal(versions.versions[0]?.sizeBytes, "value-of-db-url-2".length);
    await k.deleteSecret({ name: "db-url" });
    await refusedWith(k.getSecret({ name: "db-url" }), Code.NotFound);
    await refusedWith(k.deleteSecret({ name: "db-url" }), Code.NotFound);
    await refusedWith(k.listSecretVersions({ name: "db-url" }), Code.NotFound);
    const left = await keysQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.secret_versions where tenant_id = $1", [tenant]);
    assert.equal(left[0]!.n, 2);
    const again = await k.putSecret({ name: "db-url", value: bytes("fresh") });
    assert.equal(again.version, 1, "the name can be used again");
    await refusedWith(k.listSecrets({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
  });

  test("secrets are isolated between tenants", async () => {
    await userOf(mesh, tenantA, allKeysPermissions).secrets.putSecret({ name: "shared-name", value: bytes("tenant A's value") });
    const b = userOf(mesh, tenantB, allKeysPermissions).secrets;
    await refusedWith(b.getSecret({ name: "shared-name" }), Code.NotFound);
    assert.ok(!(await b.listSecrets({})).secrets.some((s) => s.name === "shared-name"));
    await b.putSecret({ name: "shared-name", value: bytes("tenant B's value") });
    assert.equal(Buffer.from((await userOf(mesh, tenantA, allKeysPermissions).secrets.getSecret({ name: "shared-name" })).value).toString(), "tenant A's value");
  });

  test("the edge and the permissions: values, names and periods are checked; each RPC needs its permission", async () => {
    const k = userOf(mesh, tenantA, allKeysPermissions).secrets;
    await refusedWith(k.putSecret({ name: "x", value: new Uint8Array() }), Code.InvalidArgument, "value");
    await refusedWith(k.putSecret({ name: "-bad", value: bytes("v") }), Code.InvalidArgument, "name");
    await refusedWith(k.putSecret({ name: "x", value: new Uint8Array(32769) }), Code.InvalidArgument, "value");
    await refusedWith(k.putSecret({ name: "x", value: bytes("v"), rotationPeriod: durationFromMs(3600_000) }), Code.InvalidArgument, "rotation_period");
    const listOnly = userOf(mesh, tenantA, ["keys.secrets.list", "keys.secrets.write"]).secrets;
    await listOnly.putSecret({ name: "writer-only", value: bytes("written by a writer") });
    await refusedWith(listOnly.getSecret({ name: "writer-only" }), Code.PermissionDenied, "keys.secrets.read");
    await refusedWith(listOnly.deleteSecret({ name: "writer-only" }), Code.PermissionDenied, "keys.secrets.delete");
    const none = userOf(mesh, tenantA, []).secrets;
    await refusedWith(none.putSecret({ name: "x", value: bytes("v") }), Code.PermissionDenied, "keys.secrets.write");
    await refusedWith(none.listSecrets({}), Code.PermissionDenied, "keys.secrets.list");
    await refusedWith(none.listSecretVersions({ name: "x" }), Code.PermissionDenied, "keys.secrets.list");
  });

  test("a secret whose newest version outlived its rotation period is reminded once per version", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).secrets;
    const { secret } = await k.putSecret({ name: "stripe", value: bytes("sk_live_value"), rotationPeriod: durationFromMs(day * 1000) });
    await k.putSecret({ name: "no-period", value: bytes("v") });
    const job = reminderJob(keysContext(mesh.keys.running.deps));
    await job.runOnce();
    const due = async (): Promise<number> => (await keysEvents(mesh, tenant)).filter((e) => e.type === "secret.rotation_due").length;
    assert.equal(await due(), 0);
    await keysQuery(mesh, "update $schema.secrets set updated_at = now() - interval '2 days' where tenant_id = $1", [tenant]);
    await job.runOnce();
    await job.runOnce();
    const events = (await keysEvents(mesh, tenant)).filter((e) => e.type === "secret.rotation_due");
    assert.equal(events.length, 1);
    const p = fromBinary(SecretRotationDueSchema, events[0]!.payload);
    assert.equal(p.secretId, secret!.id);
    assert.equal(p.version, 1);
    await k.putSecret({ name: "stripe", value: bytes("sk_live_rotated") });
    await keysQuery(mesh, "update $schema.secrets set updated_at = now() - interval '2 days' where id = $1", [secret!.id]);
    await job.runOnce();
    assert.equal(await due(), 2, "the new version is reminded in its turn");
  });
});

describe("WebhookService", () => {
  test("a secret is shown once, rotates with an overlap during which both sign, and a Standard Webhooks receiver verifies it", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).webhooks;
    const created = await k.createWebhookSecret({ name: "orders-endpoint" });
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    const id = created.webhookSecret!.id;
    await refusedWith(k.createWebhookSecret({ name: "orders-endpoint" }), Code.AlreadyExists);
    const payload = JSON.stringify({ type: "order.paid", id: 7 });
    const signed = await k.signWebhook({ id, messageId: "msg_1", payload: bytes(payload) });
    const headers = { "webhook-id": signed.webhookId, "webhook-timestamp": signed.webhookTimestamp, "webhook-signature": signed.webhookSignature };
    assert.deepEqual(new Webhook(created.secret).verify(payload, headers), { type: "order.paid", id: 7 });

    const rotated = await k.rotateWebhookSecret({ id, overlap: durationFromMs(3600_000) });
    assert.equal(rotated.webhookSecret?.currentVersion, 2);
    assert.ok(rotated.webhookSecret?.previousValidUntil !== undefined);
    assert.notEqual(rotated.secret, created.secret);
    const during = await k.signWebhook({ id, messageId: "msg_2", payload: bytes(payload) });
    assert.equal(during.webhookSignature.split(" ").length, 2);
    const h2 = { "webhook-id": during.webhookId, "webhook-timestamp": during.webhookTimestamp, "webhook-signature": during.webhookSignature };
    new Webhook(created.secret).verify(payload, h2);
    new Webhook(rotated.secret).verify(payload, h2);

    const cut = await k.rotateWebhookSecret({ id, overlap: durationFromMs(0) });
    const after = await k.signWebhook({ id, messageId: "msg_3", payload: bytes(payload) });
    const h3 = { "webhook-id": after.webhookId, "webhook-timestamp": after.webhookTimestamp, "webhook-signature": after.webhookSignature };
    assert.equal(after.webhookSignature.split(" ").length, 1);
    new Webhook(cut.secret).verify(payload, h3);
    assert.throws(() => new Webhook(rotated.secret).verify(payload, h3));
    const types = (await keysEvents(mesh, tenant)).map((e) => e.type);
    assert.ok(types.includes("webhook_secret.created") && types.includes("webhook_secret.rotated"));
    for (const e of await keysEvents(mesh, tenant)) for (const s of [created.secret, rotated.secret, cut.secret]) assert.ok(!e.bytes.includes(Buffer.from(s.slice(6))), "no secret in events");
  });

  test("Get, List, Delete and the documented refusals", async () => {
    const tenant = await newTenant(mesh);
    const k = userOf(mesh, tenant, allKeysPermissions).webhooks;
    const { webhookSecret } = await k.createWebhookSecret({ name: "billing" });
    const got = await k.getWebhookSecret({ id: webhookSecret!.id });
    assert.equal(got.webhookSecret?.name, "billing");
    assert.deepEqual((await k.listWebhookSecrets({})).webhookSecrets.map((w) => w.name), ["billing"]);
    assert.equal((await userOf(mesh, tenantB, allKeysPermissions).webhooks.listWebhookSecrets({})).webhookSecrets.length, 0);
    await refusedWith(userOf(mesh, tenantB, allKeysPermissions).webhooks.getWebhookSecret({ id: webhookSecret!.id }), Code.NotFound);
    await refusedWith(userOf(mesh, tenantB, allKeysPermissions).webhooks.signWebhook({ id: webhookSecret!.id, messageId: "m", payload: bytes("x") }), Code.NotFound);
    await k.deleteWebhookSecret({ id: webhookSecret!.id });
    await refusedWith(k.getWebhookSecret({ id: webhookSecret!.id }), Code.NotFound);
    await refusedWith(k.deleteWebhookSecret({ id: webhookSecret!.id }), Code.NotFound);
    await refusedWith(k.rotateWebhookSecret({ id: webhookSecret!.id }), Code.NotFound);
    await refusedWith(k.signWebhook({ id: "whk_missing", messageId: "m", payload: bytes("x") }), Code.NotFound);
    await refusedWith(k.signWebhook({ id: "whk_missing", messageId: "has space", payload: bytes("x") }), Code.InvalidArgument, "message_id");
    await refusedWith(k.rotateWebhookSecret({ id: "whk_x", overlap: durationFromMs(8 * day * 1000) }), Code.InvalidArgument, "overlap");
    await refusedWith(k.createWebhookSecret({ name: "" }), Code.InvalidArgument, "name");
    const reader = userOf(mesh, tenant, ["keys.webhooks.read"]).webhooks;
    await refusedWith(reader.createWebhookSecret({ name: "x" }), Code.PermissionDenied, "keys.webhooks.manage");
    await refusedWith(reader.signWebhook({ id: "whk_x", messageId: "m", payload: bytes("x") }), Code.PermissionDenied, "keys.webhooks.sign");
    await refusedWith(userOf(mesh, tenant, []).webhooks.listWebhookSecrets({}), Code.PermissionDenied, "keys.webhooks.read");
    const ts = await userOf(mesh, tenant, allKeysPermissions).webhooks.createWebhookSecret({ name: "fixed-time" });
    const at = new Date("2030-01-01T00:00:00Z");
    const fixed = await k.signWebhook({ id: ts.webhookSecret!.id, messageId: "m1", payload: bytes("x"), timestamp: timestampFromDate(at) });
    assert.equal(fixed.webhookTimestamp, String(at.getTime() / 1000));
  });
});

describe("the Standard Webhooks helper", () => {
  const payload = '{"event":"user.created","data":{"id":"usr_1"}}';

  test("a receiver using the standardwebhooks package verifies Bulwark's signatures unchanged", () => {
    const secret = newWebhookSecret();
    const headers = signWebhook([secret], "msg_2YgNP", payload);
    assert.deepEqual(new Webhook(secret).verify(payload, { ...headers }), JSON.parse(payload));
    const two = signWebhook([newWebhookSecret(), secret], "msg_2", payload);
    new Webhook(secret).verify(payload, { ...two });
  });

  test("Bulwark's verifier accepts the package's signatures, and refuses tampering, other secrets and stale timestamps", () => {
    const secret = newWebhookSecret();
    const wh = new Webhook(secret);
    const now = new Date();
    const headers = { "webhook-id": "msg_p1", "webhook-timestamp": String(Math.floor(now.getTime() / 1000)), "webhook-signature": wh.sign("msg_p1", now, payload) };
    verifyWebhook(secret, headers, payload);
    verifyWebhook([newWebhookSecret(), secret], headers, Buffer.from(payload));
    assert.throws(() => verifyWebhook(secret, headers, payload + " "), WebhookVerificationError);
    assert.throws(() => verifyWebhook(newWebhookSecret(), headers, payload), /no signature matches/);
    assert.throws(() => verifyWebhook(secret, { ...headers, "webhook-id": "msg_other" }, payload), WebhookVerificationError);
    const old = new Date(now.getTime() - 301_000);
    const stale = { "webhook-id": "msg_p1", "webhook-timestamp": String(Math.floor(old.getTime() / 1000)), "webhook-signature": wh.sign("msg_p1", old, payload) };
    assert.throws(() => verifyWebhook(secret, stale, payload), /too old/);
    assert.throws(() => wh.verify(payload, stale), "the package agrees");
    const future = new Date(now.getTime() + 301_000);
    assert.throws(() => verifyWebhook(secret, { ...headers, "webhook-timestamp": String(Math.floor(future.getTime() / 1000)), "webhook-signature": wh.sign("msg_p1", future, payload) }, payload), /in the future/);
    assert.throws(() => verifyWebhook(secret, { "webhook-id": "x" }, payload), /missing/);
    verifyWebhook(secret, stale, payload, { toleranceSeconds: 600 });
  });
});
