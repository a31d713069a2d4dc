import { test } from "node:test";
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import {
  apiKeyChecksum,
  apiKeyScopeAliases,
  currentContext,
  findApiKeys,
  generateApiKey,
  loadConfig,
  ConfigError,
  parseApiKey,
  permissionCatalogue,
  resolveApiKeyScopes,
  runAsCredentialVerifier,
  ServiceAssertions,
} from "../src/index.js";

test("a generated key has the documented shape and a CRC32 checksum in six base62 digits", () => {
  const { key, parsed } = generateApiKey("live");
  assert.match(key, /^bwk_live_[0-9A-Za-z]{16}_[0-9A-Za-z]{32}[0-9A-Za-z]{6}$/);
  assert.equal(key.length, 64);
  const body = key.slice(0, -6);
  // The checksum is zlib's CRC-32 of the body, base62 (0-9A-Za-z), zero-padded to 6.
  const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  let n = crc32(Buffer.from(body)) >>> 0;
  let expected = "";
  do {
    expected = digits[n % 62] + expected;
    n = Math.floor(n / 62);
  } while (n > 0);
  assert.equal(key.slice(-6), expected.padStart(6, "0"));
  assert.equal(apiKeyChecksum(body), key.slice(-6));
  assert.deepEqual(parseApiKey(key), parsed);
  assert.equal(parsed.id, `key_${key.slice(9, 25)}`);
});

test("a key with one character changed, truncated or of another environment fails the checksum offline", () => {
  const { key } = generateApiKey("test");
  assert.ok(parseApiKey(key) !== undefined);
  const i = 30;
  const changed = key.slice(0, i) + (key[i] === "a" ? "b" : "a") + key.slice(i + 1);
  for (const bad of [changed, key.slice(0, -1), key.replace("bwk_test_", "bwk_live_"), `${key}0`, ` ${key}`]) assert.equal(parseApiKey(bad), undefined, bad.slice(0, 12));
});

test("the scanner finds keys in text with their line, never returning the secret, and tells lookalikes apart", () => {
  const a = generateApiKey("live");
  const b = generateApiKey("test");
  const lookalike = `${b.key.slice(0, -1)}${b.key.endsWith("a") ? "b" : "a"}`;
  const text = `first line\nAPI_KEY="${a.key}"\n\nother=${lookalike} and ${b.key},\nxbwk_live_${a.key.slice(9)} inside a word`;
  const found = findApiKeys(text);
  assert.deepEqual(
    found.map((f) => [f.line, f.id, f.environment, f.checksumValid]),
    [
      [2, a.parsed.id, "live", true],
      [4, b.parsed.id, "test", false],
      [4, b.parsed.id, "test", true],
    ],
  );
  assert.ok(!JSON.stringify(found).includes(a.parsed.secret));
});

test("scope aliases: read only reads, write leaves out the admin-only permissions, admin is every keyable permission; none holds a user's own credentials", () => {
  assert.ok(apiKeyScopeAliases.read.every((p) => p.endsWith(".read") || p.endsWith(".list")));
  assert.ok(apiKeyScopeAliases.read.every((p) => apiKeyScopeAliases.write.includes(p)));
  assert.ok(!apiKeyScopeAliases.write.includes("identity.roles.assign") && apiKeyScopeAliases.admin.includes("identity.roles.assign"));
  for (const alias of Object.values(apiKeyScopeAliases)) assert.ok(alias.every((p) => !p.endsWith(".self") && !p.startsWith("identity.operators.")));
  assert.ok(apiKeyScopeAliases.admin.length < permissionCatalogue.length);
  assert.deepEqual(resolveApiKeyScopes(["read", "keys.encryption.encrypt"]).permissions, [...new Set([...apiKeyScopeAliases.read, "keys.encryption.encrypt"])].sort());
  assert.deepEqual(resolveApiKeyScopes(["read", "nope"]).invalid, { index: 1, scope: "nope" });
  assert.equal(resolveApiKeyScopes(["identity.mfa.self"]).invalid?.scope, "identity.mfa.self");
});

test("a service verifying a credential reaches the callee as a tenantless service holding only keys.api_keys.verify", async () => {
  const tenancy = ServiceAssertions.development("tenancy");
  const keys = ServiceAssertions.development("keys");
  const token = await runAsCredentialVerifier("tenancy", () => tenancy.sign(currentContext(), "keys"));
  const verified = await keys.verify(token);
  assert.equal(verified.context.principal?.id, "svc_tenancy");
  assert.deepEqual([...(verified.context.principal?.permissions ?? [])], ["keys.api_keys.verify"]);
  assert.equal(verified.context.tenantId, undefined);
  assert.equal(verified.context.platformReason, undefined);
});

test("KEYS_API_KEY_PEPPER is required in production for keys and at least 32 characters", () => {
  // Everything else production asks for is set, so the pepper is what is missing.
  const prod = {
    NODE_ENV: "production",
    BULWARK_BOOTSTRAP_TOKEN: "a-bootstrap-token-of-enough-length",
    BULWARK_SERVICE_KEY: Buffer.alloc(32, 1).toString("base64url"),
    BULWARK_SERVICE_PUBLIC_KEYS: "",
    BULWARK_MASTER_KEYS: `v1:${Buffer.alloc(32, 2).toString("base64")}`,
  };
  assert.throws(() => loadConfig("keys", prod), (e: unknown) => e instanceof ConfigError && /KEYS_API_KEY_PEPPER/.test(e.message));
  assert.throws(() => loadConfig("keys", { KEYS_API_KEY_PEPPER: "short" }), (e: unknown) => e instanceof ConfigError && /KEYS_API_KEY_PEPPER/.test(e.message) && !/short/.test(e.message));
  assert.equal(loadConfig("keys", {}).KEYS_API_KEY_PEPPER.length >= 32, true);
});
