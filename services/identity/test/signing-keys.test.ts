import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccessTokenVerifier, RevokedSessions, runAsPlatform } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { scratchIdentityDb, type ScratchIdentityDb } from "./support/scratch-db.js";
import { testSealer } from "./support/test-sealer.js";
import { publishAfterRetirementMs, SigningKeyStore } from "../src/auth/signing-keys.js";
import { SignInThrottle } from "../src/auth/throttle.js";
import { issueAccessToken } from "../src/auth/tokens.js";

let scratch: ScratchIdentityDb;
let db: Database;

before(async () => {
  scratch = await scratchIdentityDb("idunit");
  db = scratch.db;
});

after(() => scratch?.drop());

const subject = { userId: "usr_1", tenantId: "ten_1", sessionId: "ses_1", roles: [], permissions: ["identity.sessions.self"], permissionEpoch: 0, authTime: new Date() };

test("rotation makes a new signing key while tokens of the retired one keep verifying until they expire", async () => {
  const keys = new SigningKeyStore(db, testSealer);
  const verifier = new AccessTokenVerifier({ source: keys, revoked: new RevokedSessions() });
  const before = await issueAccessToken(keys, subject, 600);
  const oldKid = (await keys.active()).kid;
  const newKid = await keys.rotate();
  assert.notEqual(newKid, oldKid);
  const afterRotation = await issueAccessToken(keys, subject, 600);
  assert.equal(JSON.parse(Buffer.from(afterRotation.token.split(".")[0]!, "base64url").toString()).kid, newKid);
  assert.equal((await verifier.verify(before.token)).id, "usr_1");
  assert.equal((await verifier.verify(afterRotation.token)).id, "usr_1");
  const kids = (await keys.keySet(true)).keys.map((k) => k.kid);
  assert.deepEqual(kids, [newKid, oldKid]);
  const rows = await runAsPlatform("test", () => db.transaction((em) => em.execute<{ kid: string; retire_after: string; expires_at: string }[]>("select kid, retire_after, expires_at from signing_keys where kid = ?", [oldKid])));
  assert.ok(new Date(rows[0]!.retire_after).getTime() <= Date.now(), "the old key no longer signs");
  assert.ok(new Date(rows[0]!.expires_at).getTime() - Date.now() <= publishAfterRetirementMs && new Date(rows[0]!.expires_at).getTime() > Date.now() + 86_400_000, "it stays published for the longest token lifetime");
  await runAsPlatform("test", () => db.transaction((em) => em.execute("update signing_keys set expires_at = now() where kid = ?", [oldKid])));
  // A forced refresh reads the table at most once a second (a flood of unknown kids costs no read per call).
  await new Promise((r) => setTimeout(r, 1_100));
  assert.deepEqual((await keys.keySet(true)).keys.map((k) => k.kid), [newKid]);
  await assert.rejects(new AccessTokenVerifier({ source: keys, revoked: new RevokedSessions() }).verify(before.token), (e) => e instanceof ConnectError && e.code === Code.Unauthenticated);
});

test("two stores (two replicas) agree on one active key", async () => {
  const [a, b] = [new SigningKeyStore(db, testSealer), new SigningKeyStore(db, testSealer)];
  const [ka, kb] = await Promise.all([a.active(), b.active()]);
  assert.equal(ka.kid, kb.kid);
});

test("signing keys are invisible outside the platform scope", async () => {
  const rows = await db.transaction((em) => em.execute("select kid from signing_keys"));
  assert.equal(rows.length, 0);
});

test("the throttle locks after five failures, refuses without counting while locked, and a success resets the account", async () => {
  const t = new SignInThrottle(db);
  const outcomes = [];
  for (let i = 0; i < 5; i++) outcomes.push(await t.attempt("acct:x:a@b.c", "ip:1.2.3.4"));
  assert.deepEqual(outcomes.map((o) => o.locksOnFailure), [false, false, false, false, true]);
  await assert.rejects(t.attempt("acct:x:a@b.c", "ip:1.2.3.4"), (e) => e instanceof ConnectError && e.code === Code.ResourceExhausted);
  const row = await runAsPlatform("test", () => db.transaction((em) => em.execute<{ failures: number }[]>("select failures from sign_in_throttles where key = ?", ["acct:x:a@b.c"])));
  assert.equal(row[0]!.failures, 5);
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await t.attempt("acct:x:a@b.c", "ip:1.2.3.4")).failures, 6);
  await t.succeeded("acct:x:a@b.c", "ip:1.2.3.4");
  assert.equal((await t.attempt("acct:x:a@b.c", "ip:1.2.3.4")).failures, 1);
});
