import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { authenticator } from "otplib";
import { newRecoveryCodes, normalizeRecoveryCode, recoveryCodeHash } from "../src/mfa/recovery-codes.js";
import { SecretBox, SecretBoxError } from "../src/mfa/secret-box.js";
import { codeAt, matchingStep, newTotpSecret, otpauthUri, stepAt } from "../src/mfa/totp.js";

const serviceSecret = "a-service-secret-of-at-least-32-characters";

describe("SecretBox", () => {
  test("a sealed secret opens for its tenant and user and carries a version byte", () => {
    const box = new SecretBox(serviceSecret);
    const sealed = box.seal(Buffer.from("JBSWY3DPEHPK3PXP"), "ten_a", "usr_a");
    assert.equal(sealed[0], 1);
    assert.equal(sealed.includes(Buffer.from("JBSWY3DPEHPK3PXP")), false, "no plaintext in the ciphertext");
    assert.equal(box.open(sealed, "ten_a", "usr_a").toString(), "JBSWY3DPEHPK3PXP");
  });

  test("a sealed secret does not open for another user or tenant, under another key, or altered", () => {
    const box = new SecretBox(serviceSecret);
    const sealed = box.seal(Buffer.from("secret"), "ten_a", "usr_a");
    assert.throws(() => box.open(sealed, "ten_a", "usr_b"), SecretBoxError);
    assert.throws(() => box.open(sealed, "ten_b", "usr_a"), SecretBoxError);
    assert.throws(() => new SecretBox(`${serviceSecret}-other`).open(sealed, "ten_a", "usr_a"), SecretBoxError);
    const altered = Buffer.from(sealed);
    altered[altered.length - 1]! ^= 1;
    assert.throws(() => box.open(altered, "ten_a", "usr_a"), SecretBoxError);
    const otherVersion = Buffer.from(sealed);
    otherVersion[0] = 2;
    assert.throws(() => box.open(otherVersion, "ten_a", "usr_a"), /version/);
  });

  test("two seals of one secret differ (fresh IV)", () => {
    const box = new SecretBox(serviceSecret);
    assert.notDeepEqual(box.seal(Buffer.from("x"), "t", "u"), box.seal(Buffer.from("x"), "t", "u"));
  });
});

describe("TOTP", () => {
  test("a secret is 160 bits of base32 and the URI names issuer, email and RFC 6238 parameters", () => {
    const secret = newTotpSecret();
    assert.match(secret, /^[A-Z2-7]{32}$/);
    const uri = new URL(otpauthUri("pat@example.test", secret));
    assert.ok(uri.href.startsWith("otpauth://totp/Bulwark:pat%40example.test?"), uri.href);
    assert.equal(uri.searchParams.get("secret"), secret);
    assert.equal(uri.searchParams.get("issuer"), "Bulwark");
    assert.equal(uri.searchParams.get("algorithm"), "SHA1");
    assert.equal(uri.searchParams.get("digits"), "6");
    assert.equal(uri.searchParams.get("period"), "30");
  });

  test("the RFC 6238 test vector (SHA-1, T = 59 s) gives 287082", () => {
    // RFC 6238 appendix B: secret "12345678901234567890", 8 digits 94287082; 6 digits are its last six.
    const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert.equal(codeAt(secret, stepAt(59_000)), "287082");
  });

  test("the current code, and those one step either side, match their own steps; two steps away does not", () => {
    const secret = newTotpSecret();
    const now = Date.now();
    const step = stepAt(now);
    assert.equal(authenticator.generate(secret), codeAt(secret, stepAt(Date.now())));
    for (const delta of [-1, 0, 1]) {
      const code = codeAt(secret, step + delta);
      const matched = matchingStep(secret, code, now);
      assert.ok(matched !== undefined && codeAt(secret, matched) === code);
    }
    const far = codeAt(secret, step + 2);
    if (![-1, 0, 1].some((d) => codeAt(secret, step + d) === far)) assert.equal(matchingStep(secret, far, now), undefined);
    assert.equal(matchingStep(secret, "12345", now), undefined);
  });
});

describe("recovery codes", () => {
  test("ten distinct codes of 10 Crockford base32 characters (50 bits) each", () => {
    const codes = newRecoveryCodes();
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const c of codes) assert.match(c, /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/);
  });

  test("a code typed in lower case, without the dash or with look-alikes, hashes the same; another user's hash differs", () => {
    const [code] = newRecoveryCodes(1);
    assert.ok(code !== undefined);
    const h = recoveryCodeHash("usr_a", code);
    assert.equal(recoveryCodeHash("usr_a", code.toLowerCase().replace("-", "")), h);
    assert.equal(normalizeRecoveryCode("ab1o-il0"), "AB10110");
    assert.notEqual(recoveryCodeHash("usr_b", code), h);
    assert.match(h, /^[0-9a-f]{64}$/);
  });
});
