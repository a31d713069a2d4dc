import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { anyPack, timestampNow } from "@bufbuild/protobuf/wkt";
import { ActorKind, ActorType, EnvelopeSchema, Outcome, SealedValueSchema, UserEmailChangedSchema, UserSignedInSchema } from "@bulwark/contracts";
import { actionOf, callerSubjectOf, entryIdOf, entryOf, outcomeOf, type ValueKeeper } from "../src/ingest/mapping.js";
import { entryOfLeaf, leafOf } from "../src/tree/leaf.js";

const keeper: ValueKeeper = {
  seal: (_t, subjectId, value) => Promise.resolve(create(SealedValueSchema, { subjectId, ciphertext: Buffer.from(`sealed(${value.length})`) })),
  keyedHash: (_t, value) => Promise.resolve(`hmac-sha256:h${value.length}`),
};

function envelope(type: string, payload: Parameters<typeof anyPack>[1], schema: Parameters<typeof anyPack>[0], actorId = "usr_alice") {
  return create(EnvelopeSchema, { id: "evt_1", type: `bulwark.${type}`, source: type.split(".")[0]!, tenantId: "ten_a", actor: { id: actorId, kind: ActorKind.USER }, occurTime: timestampNow(), aggregateId: "usr_alice", payload: anyPack(schema, payload), traceparent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01" });
}

test("an event maps to its action, resource, outcome, actor and trace", async () => {
  const p = create(UserSignedInSchema, { userId: "usr_alice", sessionId: "ses_1", device: "Firefox", ipAddress: "10.0.0.1" });
  const e = await entryOf(envelope("identity.user.signed_in", p, UserSignedInSchema), p, "bulwark", keeper, "ten_a");
  assert.equal(e.action, "identity.user.signed_in");
  assert.deepEqual([e.resource?.type, e.resource?.id], ["user", "usr_alice"]);
  assert.equal(e.outcome, Outcome.SUCCESS);
  assert.equal(e.actor?.type, ActorType.USER);
  assert.equal(e.traceId, "0123456789abcdef0123456789abcdef");
  assert.equal(e.sourceIp?.subjectId, "usr_alice");
  assert.equal(e.userAgent?.subjectId, "usr_alice");
  assert.ok(!e.changedFields.some((f) => f.name === "ip_address" || f.name === "device"), "kept once, sealed");
  assert.equal(e.entryId, entryIdOf("evt_1"));
});

test("old and new values pair up; personal values are sealed under the subject", async () => {
  const p = create(UserEmailChangedSchema, { userId: "usr_alice", oldEmail: "a@old.test", newEmail: "a@new.test" });
  const e = await entryOf(envelope("identity.user.email_changed", p, UserEmailChangedSchema), p, "bulwark", keeper, "ten_a");
  const email = e.changedFields.find((f) => f.name === "email")!;
  assert.equal(email.oldValue?.kind.case, "sealed");
  assert.equal(email.newValue?.kind.case, "sealed");
  assert.ok(!Buffer.from(leafOf(e)).toString("latin1").includes("a@new.test"));
});

test("outcomes come from the verb; the leaf round-trips and is deterministic", async () => {
  assert.equal(outcomeOf("identity.user.sign_in_failed"), Outcome.DENIED);
  assert.equal(outcomeOf("keys.call.denied"), Outcome.DENIED);
  assert.equal(outcomeOf("keys.call.authentication_failed"), Outcome.DENIED);
  assert.equal(outcomeOf("tenancy.tenant.updated"), Outcome.SUCCESS);
  assert.equal(actionOf("t1.keys.key.created", "t1"), "keys.key.created");
  const p = create(UserSignedInSchema, { userId: "usr_alice" });
  const e = await entryOf(envelope("identity.user.signed_in", p, UserSignedInSchema), p, "bulwark", keeper, "ten_a");
  assert.deepEqual(Buffer.from(leafOf(entryOfLeaf(leafOf(e)))), Buffer.from(leafOf(e)));
});

test("the caller's address and user agent are sealed under the caller, the target's values under the target", async () => {
  const p = create(UserEmailChangedSchema, { userId: "usr_alice", oldEmail: "a@old.test", newEmail: "a@new.test" });
  const env = envelope("identity.user.email_changed", p, UserEmailChangedSchema, "usr_admin");
  env.clientIp = "10.0.0.9";
  env.userAgent = "admin-browser";
  const e = await entryOf(env, p, "bulwark", keeper, "ten_a");
  assert.equal(e.sourceIp?.subjectId, "usr_admin");
  assert.equal(e.userAgent?.subjectId, "usr_admin");
  assert.equal(e.actor?.email, undefined, "the payload's email is the target's, not the actor's");
  const email = e.changedFields.find((f) => f.name === "email")!;
  assert.deepEqual([email.oldValue?.kind.value, email.newValue?.kind.value].map((v) => (v as { subjectId: string }).subjectId), ["usr_alice", "usr_alice"]);
});

test("an API key's address is its owner's when the event names the acting key's owner, else the key's; an operator's is theirs", async () => {
  const mk = (kind: ActorKind, id: string, flatPayload: Record<string, string>) => {
    const env = create(EnvelopeSchema, { id: "evt_2", type: "bulwark.keys.key.rotated", source: "keys", tenantId: "ten_a", actor: { id, kind }, aggregateId: "key_1", clientIp: "10.1.1.1", traceparent: "" });
    return callerSubjectOf(new Map(Object.entries(flatPayload)), env);
  };
  assert.equal(mk(ActorKind.API_KEY, "key_1", { old_key_id: "key_1", owner_user_id: "usr_bob" }), "usr_bob");
  assert.equal(mk(ActorKind.API_KEY, "key_1", { old_key_id: "key_2", owner_user_id: "usr_bob" }), "key_1", "another key's owner is not the actor's");
  assert.equal(mk(ActorKind.API_KEY, "key_1", {}), "key_1");
  assert.equal(mk(ActorKind.OPERATOR, "opr_1", { user_id: "usr_bob" }), "opr_1");
  assert.equal(mk(ActorKind.SERVICE, "svc_compliance", { user_id: "usr_bob" }), undefined, "a service is no person");
  assert.equal(mk(ActorKind.SERVICE, "svc_keys", { user_id: "usr_bob" }), "usr_bob", "a call without a credential is the named user's attempt");
  assert.equal(mk(ActorKind.SERVICE, "svc_keys", { account: "usr_bob" }), undefined);
  assert.equal(mk(ActorKind.UNSPECIFIED, "", { user_id: "usr_bob" }), "usr_bob", "an anonymous attempt is the attempted user's");
  assert.equal(mk(ActorKind.UNSPECIFIED, "", {}), undefined);
});

test("a service acting on a user keeps the call's address only as a keyed hash", async () => {
  const p = create(UserSignedInSchema, { userId: "usr_alice" });
  const env = envelope("identity.user.signed_in", p, UserSignedInSchema, "svc_compliance");
  env.actor!.kind = ActorKind.SERVICE;
  env.clientIp = "10.0.0.5";
  env.userAgent = "grpc-node";
  const e = await entryOf(env, p, "bulwark", keeper, "ten_a");
  assert.equal(e.sourceIp, undefined);
  assert.equal(e.userAgent, undefined);
  assert.equal(e.changedFields.find((f) => f.name === "ip_address")?.newValue?.kind.case, "keyedHash");
});
