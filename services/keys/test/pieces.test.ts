import { test } from "node:test";
import assert from "node:assert/strict";
import { createSecretKey, randomBytes } from "node:crypto";
import { CiphertextAuthError, open, parseCiphertext, seal } from "../src/encryption/ciphertext.js";
import { developmentKeyring, LocalKeyring, MasterKeyError, parseMasterKeys } from "../src/master/index.js";

const k = (n: number): string => Buffer.alloc(32, n).toString("base64");

test("the master keyring's active key is the one marked with *, else the first", () => {
  assert.equal(parseMasterKeys(`v2:${k(2)},v1:${k(1)}`).active, "v2");
  assert.equal(parseMasterKeys(`v2:${k(2)},*v1:${k(1)}`).active, "v1");
  assert.throws(() => parseMasterKeys(`v1:${k(1)},v1:${k(2)}`), /appears twice/);
  assert.throws(() => parseMasterKeys(`*v1:${k(1)},*v2:${k(2)}`), /only one/);
  assert.throws(() => parseMasterKeys("v1:short"), (err: Error) => err instanceof MasterKeyError && err.message.startsWith("BULWARK_MASTER_KEYS") && !err.message.includes("short"));
});

test("a data key wrapped by an older master key unwraps while that key is in the ring, and a wrapped key is bound to its ring and version", async () => {
  const old = LocalKeyring.fromEnv(`v1:${k(1)}`);
  const data = randomBytes(32);
  const w = await old.wrap(data, Buffer.from("kr_a\u00001"));
  assert.equal(w.masterKeyId, "v1");
  const both = LocalKeyring.fromEnv(`v2:${k(2)},v1:${k(1)}`);
  assert.deepEqual(await both.unwrap("v1", w.wrapped, Buffer.from("kr_a\u00001")), data);
  await assert.rejects(both.unwrap("v1", w.wrapped, Buffer.from("kr_b\u00001")), MasterKeyError);
  await assert.rejects(LocalKeyring.fromEnv(`v2:${k(2)}`).unwrap("v1", w.wrapped, Buffer.from("kr_a\u00001")), /not in BULWARK_MASTER_KEYS/);
  assert.equal((await both.wrap(data, Buffer.from("x"))).masterKeyId, "v2");
  assert.equal(developmentKeyring().activeKeyId, "dev");
});

test("ciphertext carries format 1, its key id and version, a 12-byte nonce, and binds tenant, purpose and context", () => {
  const key = createSecretKey(randomBytes(32));
  const binding = { tenantId: "ten_a", purpose: "notes", context: { b: "2", a: "1" } };
  const c = seal(key, "kr_abc", 7, Buffer.from("hello"), binding);
  assert.equal(c[0], 1);
  assert.equal(c[1], 6);
  assert.equal(c.subarray(2, 8).toString(), "kr_abc");
  assert.equal(c.readUInt32BE(8), 7);
  assert.equal(c.length, 1 + 1 + 6 + 4 + 12 + 5 + 16);
  const parsed = parseCiphertext(c);
  assert.equal(open(key, parsed, { ...binding, context: { a: "1", b: "2" } }).toString(), "hello", "context order does not matter");
  for (const wrong of [{ ...binding, tenantId: "ten_b" }, { ...binding, purpose: "other" }, { ...binding, context: { a: "1" } }]) assert.throws(() => open(key, parsed, wrong), CiphertextAuthError);
  const bumped = Buffer.from(c);
  bumped.writeUInt32BE(8, 8);
  assert.throws(() => open(key, parseCiphertext(bumped), binding), CiphertextAuthError, "the version is authenticated");
});
