/**
 * The passkey ceremonies of bulwark.identity.v1.PasskeyService in a real
 * browser: headless Chromium (Debian's, at /usr/bin/chromium) driven by
 * puppeteer-core, with Chromium's own WebAuthn answering through a virtual
 * authenticator over the DevTools protocol (`WebAuthn.enable`,
 * `WebAuthn.addVirtualAuthenticator`). A tiny page served on loopback —
 * the relying party's origin, http://localhost:<port>, which identity is
 * configured to accept — calls navigator.credentials.create/get with the
 * options JSON identity returned and posts the credential's `toJSON()`
 * back; the test hands it to identity. The software authenticator of
 * support-webauthn.ts covers the same ground without a browser; this file
 * proves the JSON shapes and rules hold with the browser users have.
 *
 * Skipped, saying why, only when Chromium is not installed (.ci/run
 * installs it).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, type Client } from "@connectrpc/connect";
import { PasskeyCloneSuspectedSchema, PasskeyService, type TokenPair } from "@bulwark/contracts";
import puppeteer, { type Browser, type CDPSession, type Page } from "puppeteer-core";
import { clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { anonymousAuth, claimsOf, createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";
import { eventsOf, identityQuery, startIdentityMesh, type IdentityMesh } from "./support-identity.js";

const chromium = "/usr/bin/chromium";
const skip = existsSync(chromium) ? false : `Chromium is not installed at ${chromium} (apt-get install chromium; .ci/run installs it)`;

/** Flags for a closed network: without them Chromium keeps trying to reach its update, sync and QUIC endpoints. */
const chromiumFlags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/**
 * The relying party's page: `ceremony` runs navigator.credentials.create or
 * get with identity's options JSON and posts the credential's JSON back to
 * the page's own server; it returns the DOMException's name on failure.
 */
const page = `<!doctype html>
<meta charset="utf-8"><title>Bulwark passkeys</title>
<script>
window.ceremony = async (kind, optionsJson) => {
  try {
    const options = JSON.parse(optionsJson);
    const credential = kind === "create"
      ? await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    const posted = await fetch("/result", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(credential.toJSON()) });
    return posted.ok ? "posted" : "post failed";
  } catch (err) {
    return err && err.name ? err.name : String(err);
  }
};
</script>`;

/** A loopback server for the page that keeps what the page posts back. */
class PageServer {
  readonly #server: Server;
  readonly #posted: string[] = [];

  constructor() {
    this.#server = createServer((req, res) => {
      if (req.method === "POST" && req.url === "/result") {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          this.#posted.push(Buffer.concat(chunks).toString("utf8"));
          res.writeHead(204).end();
        });
        return;
      }
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return (this.#server.address() as AddressInfo).port;
  }

  /** The credential JSON the page posted last (and forgets it). */
  take(): string {
    const json = this.#posted.shift();
    assert.ok(json !== undefined, "the page posted nothing");
    return json;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/** How a virtual authenticator behaves. */
interface AuthenticatorKind {
  /** A platform authenticator with a biometric (UV, discoverable) or a plain security key (neither). */
  readonly userVerification: boolean;
  readonly residentKey: boolean;
}

const platformAuthenticator: AuthenticatorKind = { userVerification: true, residentKey: true };
const plainSecurityKey: AuthenticatorKind = { userVerification: false, residentKey: false };

/** One browser tab on an origin, with a virtual authenticator attached. */
interface Tab {
  readonly page: Page;
  readonly cdp: CDPSession;
  authenticatorId: string;
}

describe("passkeys in a real browser (headless Chromium, virtual authenticator)", { skip }, () => {
  let mesh: IdentityMesh;
  let tenant: TestTenant;
  let browser: Browser;
  let profile = "";
  const site = new PageServer();
  const elsewhere = new PageServer();
  let origin = "";
  let otherOrigin = "";

  before(async () => {
    origin = `http://localhost:${await site.listen()}`;
    otherOrigin = `http://localhost:${await elsewhere.listen()}`;
    // The passkeys part reads its relying party from the process environment (passkeys/config.ts).
    process.env["WEBAUTHN_RP_ID"] = "localhost";
    process.env["WEBAUTHN_ORIGINS"] = origin;
    mesh = await startIdentityMesh();
    tenant = await tenantWithSlug(mesh);
    profile = mkdtempSync(join(tmpdir(), "bulwark-chromium-"));
    browser = await puppeteer.launch({ executablePath: chromium, headless: true, pipe: true, userDataDir: profile, args: chromiumFlags });
  });

  after(async () => {
    await browser?.close();
    if (profile !== "") rmSync(profile, { recursive: true, force: true });
    await site.close();
    await elsewhere.close();
    await mesh?.stop();
  });

  async function openTab(kind: AuthenticatorKind, at = origin): Promise<Tab> {
    const p = await browser.newPage();
    await p.goto(`${at}/`);
    const cdp = await p.createCDPSession();
    await cdp.send("WebAuthn.enable");
    const tab: Tab = { page: p, cdp, authenticatorId: "" };
    tab.authenticatorId = await addAuthenticator(tab, kind);
    return tab;
  }

  async function addAuthenticator(tab: Tab, kind: AuthenticatorKind): Promise<string> {
    const { authenticatorId } = await tab.cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: kind.userVerification ? "internal" : "usb",
        hasResidentKey: kind.residentKey,
        hasUserVerification: kind.userVerification,
        isUserVerified: kind.userVerification,
        automaticPresenceSimulation: true,
      },
    });
    return authenticatorId;
  }

  /** Runs a ceremony in the tab; returns the posted credential JSON, or the browser's error name. */
  async function ceremony(tab: Tab, kind: "create" | "get", optionsJson: string, server = site): Promise<{ json: string } | { error: string }> {
    const outcome = await tab.page.evaluate((k, o) => (globalThis as unknown as { ceremony(k: string, o: string): Promise<string> }).ceremony(k, o), kind, optionsJson);
    return outcome === "posted" ? { json: server.take() } : { error: outcome };
  }

  async function credentialJson(tab: Tab, kind: "create" | "get", optionsJson: string): Promise<string> {
    const outcome = await ceremony(tab, kind, optionsJson);
    assert.ok("json" in outcome, `the browser refused the ceremony: ${"error" in outcome ? outcome.error : ""}`);
    return outcome.json;
  }

  const anonymous = (): Client<typeof PasskeyService> => clientFor(PasskeyService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.44.0.1" });

  /** A password user of the tenant with a passkey registered in the tab's authenticator. */
  async function userWithPasskey(tab: Tab, opts: { roles?: string[] } = {}): Promise<{ user: TestUser; passkeyId: string; credentialId: string }> {
    const user = await createUser(mesh, tenant, opts.roles === undefined ? {} : { roles: opts.roles });
    const tokens = await signIn(mesh, user);
    const passkeys = clientFor(PasskeyService, mesh.identity.baseUrl, tokens.accessToken);
    const { optionsJson } = await passkeys.beginPasskeyRegistration({});
    const { passkey } = await passkeys.finishPasskeyRegistration({ responseJson: await credentialJson(tab, "create", optionsJson), name: "Chromium" });
    assert.ok(passkey !== undefined);
    return { user, passkeyId: passkey.id, credentialId: passkey.credentialId };
  }

  async function discoverableSignIn(tab: Tab): Promise<{ challengeId: string; response: string }> {
    const begun = await anonymous().beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: "" });
    return { challengeId: begun.challengeId, response: await credentialJson(tab, "get", begun.optionsJson) };
  }

  test("registration stores the browser's passkey as a discoverable credential of the user", async () => {
    const tab = await openTab(platformAuthenticator);
    const { user, credentialId } = await userWithPasskey(tab);
    const { credentials } = await tab.cdp.send("WebAuthn.getCredentials", { authenticatorId: tab.authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0]!.isResidentCredential, true);
    assert.equal(credentials[0]!.rpId, "localhost");
    assert.equal(Buffer.from(credentials[0]!.credentialId, "base64").toString("base64url"), credentialId);
    assert.equal(Buffer.from(credentials[0]!.userHandle ?? "", "base64").toString("utf8"), user.id);
    const [row] = await identityQuery<{ mfa_enrolled: boolean }>(mesh, "select mfa_enrolled from $schema.users where id = $1", [user.id]);
    assert.equal(row?.mfa_enrolled, true);
    await tab.page.close();
  });

  test("discoverable sign-in with a user-verifying passkey signs in alone; the same assertion replayed is refused", async () => {
    const tab = await openTab(platformAuthenticator);
    const { user } = await userWithPasskey(tab);
    const { challengeId, response } = await discoverableSignIn(tab);
    const res = await anonymous().finishPasskeySignIn({ challengeId, responseJson: response, device: "chromium", mfaChallengeToken: "" });
    assert.equal(res.result.case, "tokens");
    const claims = claimsOf((res.result.value as TokenPair).accessToken);
    assert.deepEqual([claims.sub, claims.ten], [user.id, tenant.id]);
    await refusedWith(anonymous().finishPasskeySignIn({ challengeId, responseJson: response, device: "chromium", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
    await tab.page.close();
  });

  test("a security key without user verification is the second factor of a password sign-in: the options name it, and only then does Chromium offer it", async () => {
    const tab = await openTab(plainSecurityKey);
    const { user, credentialId } = await userWithPasskey(tab);
    const { credentials } = await tab.cdp.send("WebAuthn.getCredentials", { authenticatorId: tab.authenticatorId });
    assert.equal(credentials[0]!.isResidentCredential, false, "a non-discoverable credential");
    const first = await anonymousAuth(mesh).signIn({ tenantSlug: tenant.slug, email: user.email, password: user.password, device: "chromium" });
    assert.equal(first.result.case, "mfaChallenge");
    const challenge = first.result.case === "mfaChallenge" ? first.result.value : undefined;
    assert.deepEqual(challenge?.methods, ["passkey"]);
    // Without the MFA challenge the request has no allow list, and the browser finds nothing to offer.
    const blind = await anonymous().beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: "" });
    assert.deepEqual(await ceremony(tab, "get", blind.optionsJson), { error: "NotAllowedError" });
    const begun = await anonymous().beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: challenge!.challengeToken });
    assert.deepEqual(
      (JSON.parse(begun.optionsJson) as { allowCredentials: { id: string }[] }).allowCredentials.map((c) => c.id),
      [credentialId],
    );
    const response = await credentialJson(tab, "get", begun.optionsJson);
    const res = await anonymous().finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: response, device: "", mfaChallengeToken: challenge!.challengeToken });
    assert.equal(res.result.case, "tokens");
    assert.equal(claimsOf((res.result.value as TokenPair).accessToken).sub, user.id);
    await tab.page.close();
  });

  test("an owner who must enrol MFA enrols a passkey from the browser and ends up with full tokens", async () => {
    const tab = await openTab(platformAuthenticator);
    const owner = await createUser(mesh, tenant, { roles: ["system:owner"] });
    const first = await signIn(mesh, owner);
    assert.equal(first.mfaEnrollmentRequired, true);
    const passkeys = clientFor(PasskeyService, mesh.identity.baseUrl, first.accessToken);
    const { optionsJson } = await passkeys.beginPasskeyRegistration({});
    await passkeys.finishPasskeyRegistration({ responseJson: await credentialJson(tab, "create", optionsJson), name: "Owner's Chromium" });
    const { challengeId, response } = await discoverableSignIn(tab);
    const res = await anonymous().finishPasskeySignIn({ challengeId, responseJson: response, device: "chromium", mfaChallengeToken: "" });
    assert.equal(res.result.case, "tokens");
    const tokens = res.result.value as TokenPair;
    assert.equal(tokens.mfaEnrollmentRequired, false);
    assert.ok(claimsOf(tokens.accessToken).perms.includes("identity.roles.assign_owner"));
    await tab.page.close();
  });

  test("an assertion made on an origin the relying party does not serve is refused", async () => {
    const home = await openTab(platformAuthenticator);
    await userWithPasskey(home);
    const { credentials } = await home.cdp.send("WebAuthn.getCredentials", { authenticatorId: home.authenticatorId });
    // The same credential in a browser on another origin of the same RP ID (a look-alike site on another port).
    const away = await openTab(platformAuthenticator, otherOrigin);
    await away.cdp.send("WebAuthn.addCredential", { authenticatorId: away.authenticatorId, credential: credentials[0]! });
    const begun = await anonymous().beginPasskeySignIn({ tenantSlug: tenant.slug, mfaChallengeToken: "" });
    const outcome = await ceremony(away, "get", begun.optionsJson, elsewhere);
    assert.ok("json" in outcome, "the browser signs for the other origin");
    assert.equal((JSON.parse(Buffer.from((JSON.parse(outcome.json) as { response: { clientDataJSON: string } }).response.clientDataJSON, "base64url").toString("utf8")) as { origin: string }).origin, otherOrigin);
    await refusedWith(anonymous().finishPasskeySignIn({ challengeId: begun.challengeId, responseJson: outcome.json, device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
    await home.page.close();
    await away.page.close();
  });

  test("a cloned authenticator is refused once the original has signed in, and the clone is reported", async () => {
    const tab = await openTab(platformAuthenticator);
    const { user, passkeyId } = await userWithPasskey(tab);
    const { credentials } = await tab.cdp.send("WebAuthn.getCredentials", { authenticatorId: tab.authenticatorId });
    const snapshot = credentials[0]!;
    for (let i = 0; i < 2; i++) {
      const { challengeId, response } = await discoverableSignIn(tab);
      assert.equal((await anonymous().finishPasskeySignIn({ challengeId, responseJson: response, device: "", mfaChallengeToken: "" })).result.case, "tokens");
    }
    // The copy taken before those sign-ins: same key, older counter.
    await tab.cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: tab.authenticatorId });
    tab.authenticatorId = await addAuthenticator(tab, platformAuthenticator);
    await tab.cdp.send("WebAuthn.addCredential", { authenticatorId: tab.authenticatorId, credential: snapshot });
    const { challengeId, response } = await discoverableSignIn(tab);
    await refusedWith(anonymous().finishPasskeySignIn({ challengeId, responseJson: response, device: "", mfaChallengeToken: "" }), Code.Unauthenticated, "invalid credentials");
    const reported = (await eventsOf(mesh, tenant.id)).filter((e) => e.type === "user.passkey_clone_suspected" && e.aggregateId === user.id).map((e) => fromBinary(PasskeyCloneSuspectedSchema, e.payload));
    assert.equal(reported.length, 1);
    assert.equal(reported[0]!.passkeyId, passkeyId);
    assert.ok(reported[0]!.presentedCounter <= reported[0]!.storedCounter, `presented ${reported[0]!.presentedCounter}, stored ${reported[0]!.storedCounter}`);
    await tab.page.close();
  });
});
