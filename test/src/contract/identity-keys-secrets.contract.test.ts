/**
 * Identity's secrets live in the keys service: users' and operators' TOTP
 * secrets and the token-signing private keys are stored only as keys
 * ciphertext; rows from before (SecretBox's interim layout, plain JWK) are
 * moved on first use and by the background migration, and TOTP sign-in
 * works throughout; when keys cannot be reached a sign-in needing TOTP
 * answers UNAVAILABLE naming the dependency, never an address.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { AuthService, MfaService } from "@bulwark/contracts";
import { identityContext, identityModule, migrateLegacySecrets, SecretBox } from "@bulwark/identity";
import { clientFor, serviceSecret, startTestService, type Started } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { identityQuery, startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";
import { freePort } from "../e2e/support-e2e.js";
import { roomInStep, totpCode } from "./support-totp.js";

let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
});
after(async () => {
  await mesh?.stop();
});

const mfa = (m: Started, token?: string) => clientFor(MfaService, m.baseUrl, token);

async function enrolled(): Promise<{ user: TestUser; secret: string }> {
  await roomInStep();
  const user = await createUser(mesh, tenant);
  const tokens = await signIn(mesh, user);
  const { secret } = await mfa(mesh.identity, tokens.accessToken).enrollTotp({});
  await mfa(mesh.identity, tokens.accessToken).confirmTotp({ code: totpCode(secret, -1) });
  return { user, secret };
}

async function signInWithTotp(identity: Started, user: TestUser, code: string) {
  const auth = clientFor(AuthService, identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.20.30.40" });
  const res = await auth.signIn({ tenantSlug: user.tenant.slug, email: user.email, password: user.password, device: "phone" });
  assert.equal(res.result.case, "mfaChallenge");
  return clientFor(MfaService, identity.baseUrl).verifyMfaChallenge({ challengeToken: res.result.value.challengeToken, factor: { case: "totpCode", value: code } });
}

describe("identity's secrets are encrypted through keys", () => {
  test("a TOTP secret and the signing keys are stored only as keys ciphertext", async () => {
    const { user, secret } = await enrolled();
    const [row] = await identityQuery<{ secret_ciphertext: Buffer }>(mesh, "select secret_ciphertext from $schema.totp_credentials where user_id = $1", [user.id]);
    assert.equal(row!.secret_ciphertext[0], 2);
    assert.equal(row!.secret_ciphertext[1], 1, "then the keys ciphertext, format 1");
    assert.ok(!row!.secret_ciphertext.includes(Buffer.from(secret)));
    const keys = await identityQuery<{ private_jwk: string | null; private_jwk_sealed: Buffer | null }>(mesh, "select private_jwk, private_jwk_sealed from $schema.signing_keys");
    assert.ok(keys.length >= 1);
    for (const k of keys) {
      assert.equal(k.private_jwk, null);
      assert.ok(k.private_jwk_sealed !== null && !k.private_jwk_sealed.toString("latin1").includes('"d"'));
    }
  });

  test("TOTP sign-in still works after the migration: a row in the interim layout signs in and moves onto keys", async () => {
    const { user, secret } = await enrolled();
    // As the identity before this change stored it: SecretBox under BULWARK_SERVICE_SECRET.
    const legacy = new SecretBox(serviceSecret).seal(Buffer.from(secret, "utf8"), tenant.id, user.id);
    await identityQuery(mesh, "update $schema.totp_credentials set secret_ciphertext = $1, last_used_step = 0 where user_id = $2", [legacy, user.id]);
    await roomInStep();
    const res = await signInWithTotp(mesh.identity, user, totpCode(secret));
    assert.ok(res.tokens?.accessToken !== undefined && res.tokens.accessToken !== "");
    const [row] = await identityQuery<{ secret_ciphertext: Buffer }>(mesh, "select secret_ciphertext from $schema.totp_credentials where user_id = $1", [user.id]);
    assert.equal(row!.secret_ciphertext[0], 2, "re-encrypted through keys on first use");
    const again = await signInWithTotp(mesh.identity, user, totpCode(secret, 1));
    assert.ok(again.tokens !== undefined);
  });

  test("the background migration moves every remaining legacy TOTP secret and plain signing key", async () => {
    const { user, secret } = await enrolled();
    await identityQuery(mesh, "update $schema.totp_credentials set secret_ciphertext = $1 where user_id = $2", [new SecretBox(serviceSecret).seal(Buffer.from(secret, "utf8"), tenant.id, user.id), user.id]);
    const jwk = JSON.stringify({ kty: "OKP", crv: "Ed25519", d: "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", kid: "sk_legacy", alg: "EdDSA", use: "sig" });
    await identityQuery(mesh, "insert into $schema.signing_keys (kid, tenant_id, private_jwk, public_jwk, created_at, retire_after, expires_at) values ('sk_legacy', null, $1, '{}', now() - interval '3 days', now() - interval '2 days', now() - interval '1 day')", [jwk]);
    const deps = mesh.identity.running.deps;
    assert.ok((await migrateLegacySecrets(deps.db, identityContext(deps).sealer)) >= 2);
    assert.equal(await migrateLegacySecrets(deps.db, identityContext(deps).sealer), 0, "nothing left");
    const legacyTotp = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.totp_credentials where get_byte(secret_ciphertext, 0) = 1");
    assert.equal(legacyTotp[0]!.n, 0);
    const plain = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.signing_keys where private_jwk is not null");
    assert.equal(plain[0]!.n, 0, "no plaintext secret left in identity's schema");
    const opened = await identityContext(deps).sealer.openSigningKey("sk_legacy", (await identityQuery<{ private_jwk_sealed: Buffer }>(mesh, "select private_jwk_sealed from $schema.signing_keys where kid = 'sk_legacy'"))[0]!.private_jwk_sealed);
    assert.equal(opened, jwk);
    await roomInStep();
    assert.ok((await signInWithTotp(mesh.identity, user, totpCode(secret))).tokens !== undefined);
  });

  test("when keys cannot be reached, a sign-in needing TOTP is UNAVAILABLE naming the dependency, not an address", async () => {
    const { user, secret } = await enrolled();
    const dead = await freePort();
    const cut = await startTestService(identityModule, {
      reuse: { schema: mesh.identity.config.DATABASE_SCHEMA, prefix: mesh.identity.prefix },
      keep: true,
      env: { TENANCY_URL: mesh.tenancy.baseUrl, KEYS_URL: `http://127.0.0.1:${dead}` },
    });
    try {
      await roomInStep();
      const err = await refusedWith(signInWithTotp(cut, user, totpCode(secret)), Code.Unavailable, "keys service is unavailable");
      assert.doesNotMatch(err.rawMessage, /127\.0\.0\.1|:\d{2,5}|ECONNREFUSED/);
    } finally {
      await cut.stop();
    }
  });
});
