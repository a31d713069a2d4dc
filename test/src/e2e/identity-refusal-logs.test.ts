/**
 * Refused sign-ins, second factors and WebAuthn ceremonies answer callers
 * with one message whatever failed, so the service's operator needs the
 * log to tell which check it was. This runs identity as its own process at
 * LOG_LEVEL=debug (against a real tenancy, Postgres and NATS), makes every
 * kind of check fail, and reads its standard output: each refusal is a
 * debug line naming the check, and no line carries a password, a code, a
 * challenge, a token or a WebAuthn response.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { Client } from "@connectrpc/connect";
import { AuthService, MfaService, OperatorService, PasskeyService, TenancyService, type TokenPair } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { keysModule } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { adminQuery, bootstrapToken, clientFor, dropTestService, eventually, startTestService, type Started } from "../support/harness.js";
import { createUser, tenantWithSlug, type TestTenant, type TestUser } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";
import { anonymousOperators, operatorWithTotp } from "../contract/support-operators.js";
import { roomInStep, totpCode, wrongTotpCode } from "../contract/support-totp.js";
import { SoftwareAuthenticator } from "../contract/support-webauthn.js";
import { envFor, freePort, spawnService, type ChildService } from "./support-e2e.js";

const identityMain = fileURLToPath(new URL("../../../services/identity/dist/src/main.js", import.meta.url));

interface LogLine {
  level: string;
  msg: string;
  refused?: string;
  check?: string;
}

describe("identity logs which check refused a credential, and never the credential", () => {
  let tenancy: Started;
  let keys: Started;
  let migrated: Started;
  let child: ChildService;
  let baseUrl = "";
  let mesh: IdentityMesh;
  let tenant: TestTenant;
  /** Everything secret the test sends or receives; none may appear in the log. */
  const secrets = new Set<string>();
  const keep = (...values: string[]): void => {
    for (const v of values) if (v.length >= 6) secrets.add(v);
  };

  before(async () => {
    tenancy = await startTestService(tenancyModule);
    keys = await startTestService(keysModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl } });
    // Migrate identity's schema in process, then run identity itself as a child process on it.
    migrated = await startTestService(identityModule, { prefix: tenancy.prefix, keep: true, env: { TENANCY_URL: tenancy.baseUrl, KEYS_URL: keys.baseUrl } });
    await migrated.stop();
    const port = await freePort();
    child = spawnService(envFor(migrated.config, { LOG_LEVEL: "debug", PORT: String(port), TENANCY_URL: tenancy.baseUrl, KEYS_URL: keys.baseUrl, WEBAUTHN_RP_ID: "localhost", WEBAUTHN_ORIGINS: "http://localhost:3000" }), identityMain);
    await child.ready(port);
    baseUrl = `http://127.0.0.1:${port}`;
    mesh = { tenancy, identity: migrated, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
    tenant = await tenantWithSlug(mesh);
  });

  after(async () => {
    await child?.kill();
    if (migrated !== undefined) await dropTestService(migrated.config.DATABASE_SCHEMA, migrated.prefix, "identity");
    await keys?.stop();
    await tenancy?.stop();
  });

  const auth = (): Client<typeof AuthService> => clientFor(AuthService, baseUrl, undefined, "grpc", { "x-forwarded-for": `10.61.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}` });
  const anonymousPasskeys = (): Client<typeof PasskeyService> => clientFor(PasskeyService, baseUrl, undefined, "grpc", { "x-forwarded-for": "10.62.0.1" });
  const publicMfa = (): Client<typeof MfaService> => clientFor(MfaService, baseUrl, undefined, "grpc", { "x-forwarded-for": "10.63.0.1" });

  function lines(): LogLine[] {
    return child
      .output()
      .split("\n")
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as LogLine];
        } catch {
          return [];
        }
      });
  }

  /** Waits for the debug line of a refusal of `what` by `check`. */
  async function logged(what: string, check: string): Promise<void> {
    await eventually(() => lines().some((l) => l.refused === what && l.check === check), 5000, 25).catch(() => {
      assert.fail(`no debug line for ${what} refused by ${check}; refusals logged: ${JSON.stringify(lines().filter((l) => l.refused !== undefined))}`);
    });
    const line = lines().find((l) => l.refused === what && l.check === check)!;
    assert.equal(line.level, "debug");
  }

  async function signInWithPassword(user: TestUser): Promise<TokenPair> {
    keep(user.password);
    const res = await auth().signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" });
    assert.equal(res.result.case, "tokens");
    const tokens = res.result.value as TokenPair;
    keep(tokens.accessToken, tokens.refreshToken);
    return tokens;
  }

  async function mfaChallenge(user: TestUser): Promise<string> {
    const res = await auth().signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "laptop" });
    assert.equal(res.result.case, "mfaChallenge");
    const token = res.result.value.challengeToken;
    keep(token);
    return token;
  }

  test("a wrong password, an unknown tenant and a locked account are logged as such", async () => {
    const user = await createUser(mesh, tenant);
    keep(user.password);
    const wrong = `${user.password}-not`;
    keep(wrong);
    await assert.rejects(auth().signIn({ tenantSlug: tenant.slug, email: user.email, password: wrong, device: "" }));
    await logged("sign-in", "password");
    await assert.rejects(auth().signIn({ tenantSlug: "no-such-tenant-anywhere", email: user.email, password: wrong, device: "" }));
    await logged("sign-in", "tenant");
    await assert.rejects(auth().signIn({ tenantSlug: tenant.slug, email: `nobody.${user.email}`, password: wrong, device: "" }));
    await logged("sign-in", "user");
    for (let i = 0; i < 6; i++) await auth().signIn({ tenantSlug: tenant.slug, email: user.email, password: wrong, device: "" }).catch(() => undefined);
    await logged("sign-in", "locked");
  });

  test("a wrong, a replayed code and an exhausted or used challenge are logged as such", async () => {
    await roomInStep();
    const user = await createUser(mesh, tenant);
    const tokens = await signInWithPassword(user);
    const mfa = clientFor(MfaService, baseUrl, tokens.accessToken, "grpc", { "x-forwarded-for": "10.64.0.1" });
    const { secret } = await mfa.enrollTotp({});
    keep(secret);
    const confirming = totpCode(secret, -1);
    keep(confirming);
    const { recoveryCodes } = await mfa.confirmTotp({ code: confirming });
    keep(...recoveryCodes, ...recoveryCodes.map((c) => c.replace("-", "")));

    const challenge = await mfaChallenge(user);
    const wrong = wrongTotpCode(secret);
    await assert.rejects(publicMfa().verifyMfaChallenge({ challengeToken: challenge, factor: { case: "totpCode", value: wrong } }));
    await logged("mfa challenge", "wrong_code");
    for (let i = 0; i < 4; i++) await publicMfa().verifyMfaChallenge({ challengeToken: challenge, factor: { case: "totpCode", value: wrong } }).catch(() => undefined);
    // Five wrong codes also lock the user's code counter (across challenges); the 6th attempt is refused as locked.
    await assert.rejects(publicMfa().verifyMfaChallenge({ challengeToken: challenge, factor: { case: "totpCode", value: wrong } }));
    await logged("mfa challenge", "locked");
    // With that counter cleared, the challenge itself answers: it is exhausted.
    await adminQuery(`delete from "${migrated.config.DATABASE_SCHEMA}".sign_in_throttles where key = $1`, [`mfa:${user.id}`]);
    await assert.rejects(publicMfa().verifyMfaChallenge({ challengeToken: challenge, factor: { case: "totpCode", value: wrong } }));
    await logged("mfa challenge", "challenge_exhausted");

    const fresh = await mfaChallenge(user);
    await assert.rejects(publicMfa().verifyMfaChallenge({ challengeToken: fresh, factor: { case: "totpCode", value: confirming } }));
    await logged("mfa challenge", "replayed_code");
    const current = totpCode(secret);
    keep(current);
    const { tokens: signedIn } = await publicMfa().verifyMfaChallenge({ challengeToken: fresh, factor: { case: "totpCode", value: current } });
    keep(signedIn!.accessToken, signedIn!.refreshToken);
    await assert.rejects(publicMfa().verifyMfaChallenge({ challengeToken: fresh, factor: { case: "totpCode", value: totpCode(secret, 1) } }));
    await logged("mfa challenge", "challenge_used");
    await assert.rejects(publicMfa().verifyMfaChallenge({ challengeToken: "an-unknown-challenge-token", factor: { case: "totpCode", value: current } }));
    await logged("mfa challenge", "challenge_unknown");
  });

  test("a WebAuthn origin, signature, challenge or counter that fails is logged as such", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signInWithPassword(user);
    const passkeys = clientFor(PasskeyService, baseUrl, tokens.accessToken, "grpc", { "x-forwarded-for": "10.65.0.1" });
    const authenticator = new SoftwareAuthenticator();
    const registration = await passkeys.beginPasskeyRegistration({});
    const phished = new SoftwareAuthenticator({ origin: "https://evil.example" }).create(registration.optionsJson);
    keep(phished, registration.optionsJson);
    await assert.rejects(passkeys.finishPasskeyRegistration({ responseJson: phished, name: "Phished" }));
    await logged("passkey registration", "origin");
    const again = await passkeys.beginPasskeyRegistration({});
    const created = authenticator.create(again.optionsJson);
    keep(created, again.optionsJson);
    await passkeys.finishPasskeyRegistration({ responseJson: created, name: "Laptop" });

    const attempt = async (key: SoftwareAuthenticator, tamper: (json: string) => string = (j) => j): Promise<{ challengeId: string; response: string }> => {
      const begun = await anonymousPasskeys().beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: "" });
      const response = tamper(key.get(begun.optionsJson));
      keep(begun.challengeId, begun.optionsJson, response);
      const parsed = JSON.parse(response) as { response: { clientDataJSON: string; signature: string; authenticatorData: string } };
      keep(parsed.response.clientDataJSON, parsed.response.signature, parsed.response.authenticatorData);
      return { challengeId: begun.challengeId, response };
    };
    const finish = (a: { challengeId: string; response: string }) => anonymousPasskeys().finishPasskeySignIn({ challengeId: a.challengeId, responseJson: a.response, device: "", mfaChallengeToken: "" });

    await assert.rejects(finish(await attempt(authenticator.clone({ origin: "https://evil.example" }))));
    await logged("passkey sign-in", "origin");
    const forged = await attempt(authenticator, (json) => {
      const r = JSON.parse(json) as { response: { signature: string } };
      const sig = Buffer.from(r.response.signature, "base64url");
      sig[sig.length - 1] = sig[sig.length - 1]! ^ 0xff;
      r.response.signature = sig.toString("base64url");
      return JSON.stringify(r);
    });
    await assert.rejects(finish(forged));
    await logged("passkey sign-in", "signature");
    const clone = authenticator.clone();
    const good = await attempt(authenticator);
    const signed = await finish(good);
    if (signed.result.case === "tokens") keep(signed.result.value.accessToken, signed.result.value.refreshToken);
    await assert.rejects(finish(good));
    await logged("passkey sign-in", "challenge");
    await assert.rejects(finish(await attempt(clone)));
    await logged("passkey sign-in", "counter");
    const stranger = new SoftwareAuthenticator();
    stranger.create(again.optionsJson);
    await assert.rejects(finish(await attempt(stranger)));
    await logged("passkey sign-in", "passkey_unknown");
  });

  test("an operator's wrong password, wrong code and unknown challenge are logged as such", async () => {
    const email = `ops.${nuid.next().toLowerCase().slice(-10)}@ops.example.test`;
    const password = `Quartz-meadow-${nuid.next()}-falcon`;
    keep(password);
    await clientFor(OperatorService, baseUrl, bootstrapToken).createOperator({ email, displayName: "Log Operator", password });
    const op = await operatorWithTotp(baseUrl, email, password);
    keep(op.secret, op.tokens.accessToken, op.tokens.refreshToken);
    const anonymous = anonymousOperators(baseUrl);
    const wrongPassword = `${password}-nope`;
    keep(wrongPassword);
    await assert.rejects(anonymous.signInOperator({ email, password: wrongPassword }));
    await logged("operator sign-in", "password");
    const { mfaChallenge } = await anonymous.signInOperator({ email, password });
    keep(mfaChallenge!.challengeToken);
    const wrong = wrongTotpCode(op.secret);
    await assert.rejects(anonymous.verifyOperatorMfa({ challengeToken: mfaChallenge!.challengeToken, totpCode: wrong }));
    await logged("operator mfa challenge", "wrong_code");
    await assert.rejects(anonymous.verifyOperatorMfa({ challengeToken: "an-unknown-operator-challenge", totpCode: wrong }));
    await logged("operator mfa challenge", "challenge_unknown");
  });

  test("no log line carries a password, code, challenge, token or WebAuthn response", () => {
    const output = child.output();
    assert.ok(secrets.size > 20, `collected ${secrets.size} secrets`);
    for (const s of secrets) assert.ok(!output.includes(s), `the log contains a secret (${s.slice(0, 4)}…, ${s.length} chars)`);
    assert.ok(lines().some((l) => l.level === "debug"), "the service logged at debug");
  });
});
