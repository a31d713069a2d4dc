import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { checkNewPassword } from "../src/auth/password-policy.js";
import { PasswordHasher } from "../src/auth/passwords.js";

const hasher = new PasswordHasher({ memoryCost: 4096, timeCost: 1 });
const who = { email: "maria.gonzalez@example.com", displayName: "Maria Gonzalez" };

async function refused(password: string, reason: RegExp, extra: Partial<Parameters<typeof checkNewPassword>[0]> = {}): Promise<void> {
  await assert.rejects(checkNewPassword({ password, ...who, ...extra }, hasher), (e: unknown) => {
    assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument);
    assert.match(e.rawMessage, /^new_password: /);
    assert.match(e.rawMessage, reason);
    return true;
  });
}

test("a long passphrase of unrelated words is accepted, with any characters and no composition rules", async () => {
  await checkNewPassword({ password: "velvet harbor cobalt lantern", ...who }, hasher);
  await checkNewPassword({ password: "ñandú-über-café-Ωmega-風", ...who }, hasher);
});

test("too short for the tenant's policy (default 12), or longer than 256, is refused naming the length", async () => {
  await refused("Xq9!vLp2#", /at least 12 characters/);
  await refused("velvet harbor cobalt", /at least 24 characters/, { minLength: 24 });
  await refused(`${"velvet harbor cobalt lantern ".repeat(10)}`, /at most 256/);
});

test("common and guessable passwords are refused", async () => {
  await refused("password123456", /too common or too easy to guess/);
  await refused("qwertyuiopasdf", /too common or too easy to guess/);
});

test("a password built from the user's own email or name is refused", async () => {
  await refused("maria.gonzalez@example.com", /name or email/);
  await refused("GonzalezMaria2024!", /name or email/);
});

test("none of the previous passwords may be reused", async () => {
  const old = "velvet harbor cobalt lantern";
  await refused(old, /last 5/, { previousHashes: [await hasher.hash("something else entirely 42"), await hasher.hash(old)] });
});

test("hashes are argon2id with OWASP's parameters by default, and a changed parameter asks for a rehash", async () => {
  const h = await new PasswordHasher().hash("velvet harbor cobalt lantern");
  assert.match(h, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  assert.equal(new PasswordHasher().needsRehash(h), false);
  assert.equal(new PasswordHasher({ timeCost: 3 }).needsRehash(h), true);
  assert.equal(await new PasswordHasher().verify(h, "velvet harbor cobalt lantern"), true);
  assert.equal(await new PasswordHasher().verify(h, "wrong"), false);
  assert.equal(await new PasswordHasher().verify("not-a-hash", "x"), false);
  assert.equal(await new PasswordHasher().verifyDummy("x"), false);
});
