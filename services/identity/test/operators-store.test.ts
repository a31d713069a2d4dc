import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { EnvelopeSchema, OperatorCreatedSchema, OperatorState } from "@bulwark/contracts";
import { AccessTokenVerifier, isPlatformPrincipal, MeshKeys, RevokedSessions, runAsPlatform, runInTenant } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { EventPublisher } from "@bulwark/events";
import { decodeJwt } from "jose";
import { scratchIdentityDb, type ScratchIdentityDb } from "./support/scratch-db.js";
import { testSealer } from "./support/test-sealer.js";
import { PasswordHasher } from "../src/auth/passwords.js";
import { SigningKeyStore } from "../src/auth/signing-keys.js";
import { createOperator, listOperators } from "../src/operators/store.js";
import { issueOperatorToken, operatorTokenLifetimeS } from "../src/operators/tokens.js";

const hasher = new PasswordHasher({ memoryCost: 4096, timeCost: 1 });
const password = "Granite-lantern-orbit-9417";
let events: EventPublisher;
let scratch: ScratchIdentityDb;
let db: Database;

before(async () => {
  scratch = await scratchIdentityDb("idopr");
  db = scratch.db;
  events = new EventPublisher({ service: "identity", subjectPrefix: "topr", keys: MeshKeys.development("identity") });
});

after(() => scratch?.drop());

const code = (c: Code, field?: RegExp) => (e: unknown) => e instanceof ConnectError && e.code === c && (field === undefined || field.test(e.rawMessage));

test("a created operator is active, stores only an argon2id hash and records operator.created without a tenant or a secret", async () => {
  const op = await createOperator({ db, events, hasher }, { email: "Ada@Example.COM ", displayName: "Ada Lovelace", password });
  assert.match(op.id, /^opr_/);
  assert.equal(op.email, "ada@example.com");
  assert.equal(op.state, OperatorState.ACTIVE);
  const rows = await runAsPlatform("test", () => db.transaction((em) => em.execute<{ password_hash: string; tenant_id: string | null }[]>("select password_hash, tenant_id from operators where id = ?", [op.id])));
  assert.match(rows[0]!.password_hash, /^\$argon2id\$/);
  assert.equal(rows[0]!.tenant_id, null);
  const outbox = await runAsPlatform("test", () => db.transaction((em) => em.execute<{ tenant_id: string | null; envelope: Buffer }[]>("select tenant_id, envelope from outbox where subject = 'topr.identity.operator.created'")));
  const mine = outbox.map((r) => ({ tenant: r.tenant_id, env: fromBinary(EnvelopeSchema, r.envelope) })).find((r) => r.env.aggregateId === op.id);
  assert.ok(mine !== undefined);
  assert.equal(mine.tenant, null);
  const payload = anyUnpack(mine.env.payload!, OperatorCreatedSchema);
  assert.equal(payload?.operator?.email, "ada@example.com");
  assert.ok(!Buffer.from(mine.env.payload!.value).toString("latin1").includes("argon2"), "no hash in the event");
});

test("operator rows are invisible to a tenant-scoped transaction (platform table under the isolation policy)", async () => {
  const seen = await runInTenant("ten_someone", () => db.transaction((em) => em.execute<{ n: number }[]>("select count(*)::int as n from operators")));
  assert.equal(seen[0]!.n, 0);
  assert.ok((await listOperators(db)).length >= 1);
});

test("a weak or personal password is INVALID_ARGUMENT naming the field, and a taken email (any case) ALREADY_EXISTS", async () => {
  await assert.rejects(createOperator({ db, events, hasher }, { email: "bob@example.com", displayName: "Bob", password: "short" }), code(Code.InvalidArgument, /password/));
  await assert.rejects(createOperator({ db, events, hasher }, { email: "bob@example.com", displayName: "Bob", password: "password1234" }), code(Code.InvalidArgument, /password/));
  await assert.rejects(createOperator({ db, events, hasher }, { email: "ADA@example.com", displayName: "Other Ada", password }), code(Code.AlreadyExists));
});

test("an operator token is signed with identity's keys, has no tenant and verifies as a platform principal for one hour", async () => {
  const keys = new SigningKeyStore(db, testSealer);
  const now = new Date();
  const issued = await issueOperatorToken(keys, "opr_test", "ses_test", now);
  const claims = decodeJwt(issued.token);
  assert.equal(claims["ten"], undefined);
  assert.equal(claims["kind"], "operator");
  assert.equal(claims.exp! - claims.iat!, operatorTokenLifetimeS);
  const verifier = new AccessTokenVerifier({ source: keys, revoked: new RevokedSessions() });
  const p = await verifier.verify(issued.token);
  assert.equal(p.kind, "operator");
  assert.equal(p.tenantId, undefined);
  assert.ok(isPlatformPrincipal(p));
  assert.ok(p.permissions.has("*"));
});
