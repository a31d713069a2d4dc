/**
 * Unit tests of the passkeys part's pieces that need no database: the
 * WebAuthn settings, parsing of authenticator answers, the signature
 * counter rule, and the refusals PasskeyService makes before it opens a
 * transaction.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { FinishPasskeySignInRequestSchema } from "@bulwark/contracts";
import { MeshKeys } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { EventPublisher } from "@bulwark/events";
import { webAuthnConfig } from "../src/passkeys/config.js";
import { SignInThrottle } from "../src/auth/throttle.js";
import { PasskeyServiceImpl } from "../src/passkeys/passkey-service.js";
import { challengeOf, cleanTransports, counterAdvances, MalformedWebAuthnResponse, parseAuthenticationResponse, parseRegistrationResponse } from "../src/passkeys/webauthn.js";

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString("base64url");

function assertion(challenge: string): string {
  return JSON.stringify({ id: "Y3JlZA", rawId: "Y3JlZA", type: "public-key", response: { clientDataJSON: b64({ type: "webauthn.get", challenge, origin: "http://localhost:3000" }), authenticatorData: "AAAA", signature: "AAAA" }, clientExtensionResults: {} });
}

describe("WebAuthn settings", () => {
  test("the defaults serve a local development origin", () => {
    assert.deepEqual(webAuthnConfig({}), { rpId: "localhost", rpName: "Bulwark", origins: ["http://localhost:3000"] });
  });

  test("origins are a comma list of bare origins", () => {
    const c = webAuthnConfig({ WEBAUTHN_RP_ID: "example.com", WEBAUTHN_ORIGINS: "https://example.com, https://app.example.com" });
    assert.deepEqual(c.origins, ["https://example.com", "https://app.example.com"]);
    assert.equal(c.rpId, "example.com");
  });

  test("a malformed setting stops the start naming the variable", () => {
    assert.throws(() => webAuthnConfig({ WEBAUTHN_ORIGINS: "https://example.com/login" }), /WEBAUTHN_ORIGINS/);
    assert.throws(() => webAuthnConfig({ WEBAUTHN_ORIGINS: "not a url" }), /WEBAUTHN_ORIGINS/);
    assert.throws(() => webAuthnConfig({ WEBAUTHN_RP_ID: "https://example.com" }), /WEBAUTHN_RP_ID/);
  });
});

describe("authenticator answers", () => {
  test("an assertion's credential and challenge are read from its JSON", () => {
    const parsed = parseAuthenticationResponse(assertion("abc_DEF-123"));
    assert.equal(parsed.credentialId, "Y3JlZA");
    assert.equal(parsed.challenge, "abc_DEF-123");
  });

  test("a registration needs its attestation object", () => {
    const json = JSON.stringify({ id: "Y3JlZA", rawId: "Y3JlZA", type: "public-key", response: { clientDataJSON: b64({ challenge: "xyz" }) } });
    assert.throws(() => parseRegistrationResponse(json), MalformedWebAuthnResponse);
  });

  test("anything that is not a public-key credential is malformed", () => {
    for (const json of ["", "null", "[]", "{}", JSON.stringify({ id: "a b", type: "public-key", response: {} }), JSON.stringify({ id: "abc", type: "password", response: {} })]) {
      assert.throws(() => parseAuthenticationResponse(json), MalformedWebAuthnResponse, json);
    }
    assert.throws(() => challengeOf(Buffer.from("not json").toString("base64url")), MalformedWebAuthnResponse);
    assert.throws(() => challengeOf(b64({ type: "webauthn.get" })), MalformedWebAuthnResponse);
  });

  test("only the transports WebAuthn defines are kept, once each", () => {
    assert.deepEqual(cleanTransports(["internal", "hybrid", "internal", "carrier-pigeon", 7, "a,b"]), ["internal", "hybrid"]);
    assert.deepEqual(cleanTransports(undefined), []);
  });
});

describe("the signature counter", () => {
  test("a counter must increase, except for authenticators that keep none", () => {
    assert.equal(counterAdvances(0, 1), true);
    assert.equal(counterAdvances(5, 6), true);
    assert.equal(counterAdvances(0, 0), true, "no counter at all");
    assert.equal(counterAdvances(5, 5), false, "replayed: a clone");
    assert.equal(counterAdvances(5, 3), false, "went back: a clone");
    assert.equal(counterAdvances(5, 0), false, "a counter that stops is not a counterless authenticator");
  });
});

describe("PasskeyService refusals before the database", () => {
  const db = {
    transaction: () => {
      throw new Error("no database in this test");
    },
  } as unknown as Database;
  const svc = new PasskeyServiceImpl({
    db,
    events: new EventPublisher({ service: "identity", keys: MeshKeys.development("identity") }),
    tenancy: {} as never,
    webauthn: webAuthnConfig({}),
    auth: { completeSignIn: () => Promise.reject(new Error("unused")), openMfaChallenge: () => Promise.reject(new Error("unused")) },
    throttle: new SignInThrottle(db),
  });
  const hctx = { requestHeader: new Headers(), values: createContextValues() } as unknown as HandlerContext;

  async function code(p: Promise<unknown>): Promise<Code> {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof ConnectError, String(err));
      return err.code;
    }
    assert.fail("expected a refusal");
  }

  test("a malformed assertion is INVALID_ARGUMENT naming response_json", async () => {
    const req = create(FinishPasskeySignInRequestSchema, { challengeId: "abc", responseJson: "{", device: "" });
    assert.equal(await code(svc.finishPasskeySignIn(req, hctx)), Code.InvalidArgument);
  });

  test("an assertion for another challenge than the one named is UNAUTHENTICATED", async () => {
    const req = create(FinishPasskeySignInRequestSchema, { challengeId: "abc", responseJson: assertion("other"), device: "" });
    assert.equal(await code(svc.finishPasskeySignIn(req, hctx)), Code.Unauthenticated);
  });
});
