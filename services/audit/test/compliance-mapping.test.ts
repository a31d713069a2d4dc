import { test } from "node:test";
import assert from "node:assert/strict";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, timestampNow } from "@bufbuild/protobuf/wkt";
import {
  AccessReviewCreatedSchema,
  AccessReviewDecidedSchema,
  AccessReviewDecision,
  ActorKind,
  ActorType,
  DataSubjectRequestChangedSchema,
  EnvelopeSchema,
  InactiveAccountChangedSchema,
  LegalHoldChangedSchema,
  Outcome,
  RequestState,
  RequestType,
  SealedValueSchema,
  type AuditEntry,
  type ChangedField,
} from "@bulwark/contracts";
import { entryOf, type ValueKeeper } from "../src/ingest/mapping.js";
import { leafOf } from "../src/tree/leaf.js";

/** Seals as `sealed(<value>)` so a test sees what was sealed under whom; the leaf check below proves nothing plain is left. */
const keeper: ValueKeeper = {
  seal: (_t, subjectId, value) => Promise.resolve(create(SealedValueSchema, { subjectId, ciphertext: Buffer.from(`sealed:${Buffer.from(value).toString("hex")}`) })),
  keyedHash: (_t, value) => Promise.resolve(`hmac-sha256:h${value.length}`),
};

/** compliance's event `type` about `aggregateId`, published by an officer calling from 10.0.0.9. */
async function complianceEntry<Desc extends DescMessage>(type: string, aggregateId: string, schema: Desc, payload: MessageShape<Desc>): Promise<AuditEntry> {
  const envelope = create(EnvelopeSchema, {
    id: `evt_${type}`,
    type: `bulwark.${type}`,
    source: "compliance",
    tenantId: "ten_a",
    actor: { id: "usr_officer", kind: ActorKind.USER },
    occurTime: timestampNow(),
    aggregateId,
    payload: anyPack(schema, payload),
    clientIp: "10.0.0.9",
    userAgent: "officer-browser",
  });
  return entryOf(envelope, payload, "bulwark", keeper, "ten_a");
}

const field = (e: AuditEntry, name: string): ChangedField | undefined => e.changedFields.find((f) => f.name === name);
const sealedUnder = (f: ChangedField | undefined): string | undefined => (f?.newValue?.kind.case === "sealed" ? f.newValue.kind.value.subjectId : undefined);

test("a data-subject request's transition is the officer's action on the request, its personal text sealed under the subject", async () => {
  const request = {
    id: "dsr_1",
    tenantId: "ten_a",
    type: RequestType.ERASURE,
    state: RequestState.IDENTITY_VERIFIED,
    subjectId: "usr_subject",
    requestedBy: "usr_first",
    approvedBy: "usr_officer",
    details: "mail from dana@example.test",
    extensionReason: "Dana's second mailbox",
    correctedFields: ["email"],
  };
  const p = create(DataSubjectRequestChangedSchema, { request, previousState: RequestState.RECEIVED });
  const e = await complianceEntry("compliance.request.approved", "dsr_1", DataSubjectRequestChangedSchema, p);
  assert.equal(e.action, "compliance.request.approved");
  assert.deepEqual([e.resource?.type, e.resource?.id], ["request", "dsr_1"]);
  assert.deepEqual([e.actor?.type, e.actor?.id, e.tenantId, e.outcome], [ActorType.USER, "usr_officer", "ten_a", Outcome.SUCCESS]);
  assert.equal(sealedUnder(field(e, "request.details")), "usr_subject", "the subject's words, under the subject's key (not the officer's)");
  assert.equal(sealedUnder(field(e, "request.extension_reason")), "usr_subject");
  assert.equal(e.sourceIp?.subjectId, "usr_officer", "the officer's own address, under the officer's key (not the subject's)");
  assert.equal(e.userAgent?.subjectId, "usr_officer");
  const state = field(e, "request.state")!;
  assert.deepEqual([state.oldValue?.kind.value, state.newValue?.kind.value], ["REQUEST_STATE_RECEIVED", "REQUEST_STATE_IDENTITY_VERIFIED"], "the previous state pairs with the new one");
  assert.equal(field(e, "previous_state"), undefined);
  for (const [name, value] of [["request.subject_id", "usr_subject"], ["request.approved_by", "usr_officer"], ["request.corrected_fields", "email"], ["request.type", "REQUEST_TYPE_ERASURE"]]) {
    assert.deepEqual(field(e, name!)?.newValue?.kind, { case: "plain", value }, name);
  }
  const leaf = Buffer.from(leafOf(e)).toString("latin1");
  for (const personal of ["dana@example.test", "second mailbox", "10.0.0.9", "officer-browser"]) assert.ok(!leaf.includes(personal), `the leaf holds ${personal}`);
});

test("a failed request is a failure; a request whose subject's key is gone keeps its text as redacted", async () => {
  const p = create(DataSubjectRequestChangedSchema, { request: { id: "dsr_2", subjectId: "usr_gone", state: RequestState.FAILED, stateReason: "identity: Dana holds Owner" }, previousState: RequestState.IN_PROGRESS });
  const e = await complianceEntry("compliance.request.failed", "dsr_2", DataSubjectRequestChangedSchema, p);
  assert.equal(e.outcome, Outcome.FAILED);
  assert.equal(sealedUnder(field(e, "request.state_reason")), "usr_gone");
  const gone: ValueKeeper = { ...keeper, seal: () => Promise.resolve(undefined) };
  const envelope = create(EnvelopeSchema, { id: "evt_x", type: "bulwark.compliance.request.failed", source: "compliance", tenantId: "ten_a", aggregateId: "dsr_2", payload: anyPack(DataSubjectRequestChangedSchema, p) });
  const erased = await entryOf(envelope, p, "bulwark", gone, "ten_a");
  assert.equal(field(erased, "request.state_reason")?.newValue?.kind.case, "redacted");
});

test("an access-review decision is about the grant's holder: their name and the reviewer's comment sealed under them", async () => {
  const p = create(AccessReviewDecidedSchema, { reviewId: "arv_1", item: { id: "ari_1", userId: "usr_holder", userDisplayName: "Dana Holder", roleId: "system:admin", roleName: "Admin", decision: AccessReviewDecision.REVOKE, decidedBy: "usr_officer", comment: "Dana left in May" } });
  const e = await complianceEntry("compliance.access_review.decided", "arv_1", AccessReviewDecidedSchema, p);
  assert.deepEqual([e.resource?.type, e.resource?.id, e.actor?.id], ["access_review", "arv_1", "usr_officer"]);
  assert.equal(sealedUnder(field(e, "item.user_display_name")), "usr_holder");
  assert.equal(sealedUnder(field(e, "item.comment")), "usr_holder");
  assert.deepEqual(field(e, "item.role_name")?.newValue?.kind, { case: "plain", value: "Admin" });
  assert.ok(!Buffer.from(leafOf(e)).toString("latin1").includes("Dana"));
});

test("a review campaign's name and a legal hold are kept plainly", async () => {
  const created = await complianceEntry("compliance.access_review.created", "arv_2", AccessReviewCreatedSchema, create(AccessReviewCreatedSchema, { review: { id: "arv_2", name: "Q3 admins", createdBy: "usr_officer" } }));
  assert.deepEqual(field(created, "review.name")?.newValue?.kind, { case: "plain", value: "Q3 admins" });
  const hold = await complianceEntry("compliance.legal_hold.created", "lgh_1", LegalHoldChangedSchema, create(LegalHoldChangedSchema, { id: "lgh_1", hold: { category: "billing_records", reason: "7 years, tax law" } }));
  assert.deepEqual([hold.action, hold.resource?.type, hold.resource?.id, hold.actor?.id, hold.outcome], ["compliance.legal_hold.created", "legal_hold", "lgh_1", "usr_officer", Outcome.SUCCESS]);
  assert.deepEqual(field(hold, "hold.category")?.newValue?.kind, { case: "plain", value: "billing_records" });
  assert.deepEqual(field(hold, "hold.reason")?.newValue?.kind, { case: "plain", value: "7 years, tax law" });
  assert.equal(hold.sourceIp?.subjectId, "usr_officer", "no one else named: the acting officer is the subject");
});

test("an inactive account's entry has its user as the data subject, not the job acting", async () => {
  const payload = create(InactiveAccountChangedSchema, { account: { userId: "usr_idle" } });
  const envelope = create(EnvelopeSchema, { id: "evt_idle", type: "bulwark.compliance.inactive_account.warned", source: "compliance", tenantId: "ten_a", actor: { id: "svc_compliance", kind: ActorKind.SERVICE }, aggregateId: "usr_idle", payload: anyPack(InactiveAccountChangedSchema, payload), clientIp: "10.0.0.8" });
  const e = await entryOf(envelope, payload, "bulwark", keeper, "ten_a");
  assert.deepEqual([e.action, e.resource?.type, e.resource?.id, e.actor?.type], ["compliance.inactive_account.warned", "inactive_account", "usr_idle", ActorType.SERVICE]);
  assert.equal(e.sourceIp, undefined, "the job's address is no person's: not sealed under the user");
  assert.equal(field(e, "ip_address")?.newValue?.kind.case, "keyedHash");
});
