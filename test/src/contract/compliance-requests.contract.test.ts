/**
 * The contract of bulwark.compliance.v1.DataSubjectRequestService: every
 * RPC through the generated client against a real compliance server with
 * tenancy, keys and identity beside it (real Postgres and NATS), its
 * success case and each documented error.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RectificationOutcome, RequestState, RequestType, StepState, type DataSubjectRequest } from "@bulwark/contracts";
import { complianceContext, expireExports } from "@bulwark/compliance";
import { refusedWith } from "./support-assert.js";
import { activeUser, auditEntriesReach, newTenant, officerPermissions, plaintextHits, rectifierPermissions, requestReaches, requestsAs, startComplianceMesh, usersIn, type ComplianceMesh } from "./support-compliance.js";
import { systemRole } from "@bulwark/core";
import { uniqueEmail } from "./support-identity.js";

let mesh: ComplianceMesh;
let tenant: string;
let subject: { id: string; email: string };
const day = 86_400_000;

before(async () => {
  mesh = await startComplianceMesh();
  tenant = await newTenant(mesh);
  subject = await activeUser(mesh, tenant);
});
after(async () => {
  await mesh?.stop();
});

/** Reads a DownloadExport stream: the manifest and the bundle's bytes. */
async function download(client: ReturnType<typeof requestsAs>, id: string) {
  let manifest;
  const chunks: Uint8Array[] = [];
  for await (const m of client.downloadExport({ id })) {
    if (m.part.case === "manifest") manifest = m.part.value;
    else if (m.part.case === "chunk") chunks.push(m.part.value);
  }
  return { manifest, bundle: JSON.parse(Buffer.concat(chunks).toString("utf8")) as { manifest: { services: { name: string }[] }; services: Record<string, { schema: unknown; data: Record<string, unknown[]> }> } };
}

describe("DataSubjectRequestService.CreateDataSubjectRequest", () => {
  test("a request is received, due one calendar month later, naming who recorded it", async () => {
    const officer = requestsAs(mesh, tenant, officerPermissions, "usr_officer1");
    const request = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id, details: "ticket 42" })).request!;
    assert.ok(request.id.startsWith("dsr_"));
    assert.equal(request.state, RequestState.RECEIVED);
    assert.equal(request.requestedBy, "usr_officer1");
    assert.equal(request.tenantId, tenant);
    const created = timestampDate(request.createTime!);
    const due = timestampDate(request.dueTime!);
    const days = (due.getTime() - created.getTime()) / day;
    assert.ok(days >= 28 && days <= 31, `due ${days} days out`);
  });

  test("a type, a subject and an existing user are required", async () => {
    const officer = requestsAs(mesh, tenant);
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.UNSPECIFIED, subjectId: subject.id }), Code.InvalidArgument, "type");
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: "" }), Code.InvalidArgument, "subject_id");
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: "usr_nobody" }), Code.NotFound);
  });

  test("an erasure needs compliance.erasures.create besides compliance.requests.create", async () => {
    const clerk = requestsAs(mesh, tenant, ["compliance.requests.create"]);
    await refusedWith(clerk.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: subject.id }), Code.PermissionDenied, "compliance.erasures.create");
    await refusedWith(clerk.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id }), Code.PermissionDenied, "compliance.exports.create");
    const { request } = await clerk.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id });
    assert.equal(request?.type, RequestType.RECTIFICATION);
    await refusedWith(requestsAs(mesh, tenant, ["compliance.requests.read"]).createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id }), Code.PermissionDenied);
  });

  test("without a credential the call is refused", async () => {
    const { clientFor } = await import("../support/harness.js");
    const { DataSubjectRequestService } = await import("@bulwark/contracts");
    await refusedWith(clientFor(DataSubjectRequestService, mesh.compliance.baseUrl).createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id }), Code.Unauthenticated);
  });
});

describe("DataSubjectRequestService.GetDataSubjectRequest and ListDataSubjectRequests", () => {
  test("another tenant's request is not found, and listing pages newest first", async () => {
    const officer = requestsAs(mesh, tenant);
    const a = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id })).request!;
    const b = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id })).request!;
    assert.equal((await officer.getDataSubjectRequest({ id: a.id })).request?.id, a.id);
    const other = await newTenant(mesh);
    await refusedWith(requestsAs(mesh, other).getDataSubjectRequest({ id: a.id }), Code.NotFound);
    await refusedWith(officer.getDataSubjectRequest({ id: "dsr_missing" }), Code.NotFound);
    const page = await officer.listDataSubjectRequests({ pageSize: 1, subjectId: subject.id });
    assert.equal(page.requests[0]?.id, b.id);
    assert.notEqual(page.nextPageToken, "");
    const next = await officer.listDataSubjectRequests({ pageSize: 1, subjectId: subject.id, pageToken: page.nextPageToken });
    assert.equal(next.requests[0]?.id, a.id);
    assert.equal((await requestsAs(mesh, other).listDataSubjectRequests({})).requests.length, 0);
    await refusedWith(officer.listDataSubjectRequests({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
  });
});

describe("an export", () => {
  test("runs across every service once identity is verified and is downloadable as one bundle", async () => {
    const officer = requestsAs(mesh, tenant);
    const created = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!;
    await refusedWith(download(officer, created.id), Code.FailedPrecondition, "received");
    const verified = (await officer.verifySubjectIdentity({ id: created.id, method: "signed-in request" })).request!;
    assert.equal(verified.state, RequestState.IN_PROGRESS);
    assert.equal(verified.verifiedBy !== "", true);
    await refusedWith(officer.verifySubjectIdentity({ id: created.id, method: "again" }), Code.FailedPrecondition);
    const done = await requestReaches(officer, created.id, RequestState.COMPLETED);
    assert.deepEqual(done.steps.map((s) => s.service).sort(), ["audit", "compliance", "identity", "keys", "tenancy"]);
    assert.ok(done.steps.every((s) => s.state === StepState.DONE));
    assert.ok(done.exportExpireTime !== undefined);
    const { manifest, bundle } = await download(officer, created.id);
    assert.equal(manifest?.requestId, created.id);
    assert.deepEqual([...(manifest?.services ?? [])].sort(), ["audit", "compliance", "identity", "keys", "tenancy"]);
    const profile = bundle.services["identity"]!.data["profile"] as { email: string }[];
    assert.equal(profile[0]?.email, subject.email);
    assert.ok(bundle.services["identity"]!.schema !== undefined);
    await refusedWith(download(requestsAs(mesh, tenant, ["compliance.requests.read"]), created.id), Code.PermissionDenied);
    await refusedWith(download(officer, "dsr_missing"), Code.NotFound);
    // Every transition is an event on compliance's stream.
    const { adminQuery } = await import("../support/harness.js");
    const { fromBinary } = await import("@bufbuild/protobuf");
    const { EnvelopeSchema } = await import("@bulwark/contracts");
    const rows = await adminQuery<{ envelope: Buffer }>(`select envelope from "${mesh.compliance.config.DATABASE_SCHEMA}".outbox order by created_at, id`);
    const types = rows.map((r) => fromBinary(EnvelopeSchema, r.envelope)).filter((e) => e.aggregateId === created.id).map((e) => e.type.slice(`${mesh.compliance.prefix}.compliance.`.length));
    assert.deepEqual(types, ["request.received", "request.verified", "request.started", "request.completed"]);
  });

  test("is deleted when its download window ends", async () => {
    const officer = requestsAs(mesh, tenant);
    const created = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!;
    await officer.verifySubjectIdentity({ id: created.id, method: "video call" });
    await requestReaches(officer, created.id, RequestState.COMPLETED);
    const ctx = complianceContext(mesh.compliance.running.deps);
    mesh.clock.advance(8 * day);
    try {
      assert.ok((await expireExports(ctx)) >= 1);
      await refusedWith(download(officer, created.id), Code.FailedPrecondition, "expired");
    } finally {
      mesh.clock.advance(-8 * day);
    }
  });
});

describe("an erasure", () => {
  test("needs a second person's approval, then reports per service what it erased and what a legal hold kept", async () => {
    const person = await activeUser(mesh, tenant);
    const requester = requestsAs(mesh, tenant, officerPermissions, "usr_requester");
    const approver = requestsAs(mesh, tenant, officerPermissions, "usr_approver");
    const hold = await requester.createLegalHold({ hold: { category: "api_keys", reason: "billing records, 7 years", untilTime: timestampFromDate(new Date(Date.now() + 7 * 365 * day)) } });
    try {
      const created = (await requester.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: person.id })).request!;
      await refusedWith(approver.approveErasure({ id: created.id }), Code.FailedPrecondition, "verified");
      const verified = (await requester.verifySubjectIdentity({ id: created.id, method: "ID seen" })).request!;
      assert.equal(verified.state, RequestState.IDENTITY_VERIFIED);
      await refusedWith(requester.approveErasure({ id: created.id }), Code.PermissionDenied, "second person");
      await refusedWith(requestsAs(mesh, tenant, ["compliance.requests.read"]).approveErasure({ id: created.id }), Code.PermissionDenied, "compliance.erasures.approve");
      const approved = (await approver.approveErasure({ id: created.id })).request!;
      assert.equal(approved.state, RequestState.IN_PROGRESS);
      assert.equal(approved.approvedBy, "usr_approver");
      await refusedWith(approver.approveErasure({ id: created.id }), Code.FailedPrecondition);
      const done = await requestReaches(requester, created.id, RequestState.COMPLETED);
      const keysStep = done.steps.find((s) => s.service === "keys")!;
      const kept = keysStep.erasures.find((e) => e.category === "api_keys")!;
      assert.match(kept.note, /held until .*billing records, 7 years/);
      const identityStep = done.steps.find((s) => s.service === "identity")!;
      assert.ok(identityStep.erasures.some((e) => e.category === "profile" && e.recordCount === 1n));
      await refusedWith(requestsAs(mesh, tenant).createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: person.id }), Code.NotFound);
    } finally {
      await requester.deleteLegalHold({ id: hold.id });
    }
  });

  test("an export cannot be approved as an erasure", async () => {
    const officer = requestsAs(mesh, tenant);
    const created = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id })).request!;
    await refusedWith(requestsAs(mesh, tenant).approveErasure({ id: created.id }), Code.FailedPrecondition, "only an erasure");
    await refusedWith(officer.approveErasure({ id: "dsr_missing" }), Code.NotFound);
  });
});

describe("an erasure of the tenant's last owner", () => {
  const lastOwner = /last owner: transfer ownership first/;

  test("is refused at creation with FAILED_PRECONDITION (transfer ownership first) and accepted once another active user is Owner", async () => {
    const t = await newTenant(mesh);
    const owner = await activeUser(mesh, t, ["system:owner"]);
    const officer = requestsAs(mesh, t);
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: owner.id }), Code.FailedPrecondition, "transfer ownership first");
    assert.equal((await officer.listDataSubjectRequests({ subjectId: owner.id })).requests.length, 0, "no request was recorded");
    // Only an erasure is refused: the owner may still see their data.
    assert.equal((await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: owner.id })).request?.state, RequestState.RECEIVED);
    // A suspended co-owner does not count.
    const suspended = await activeUser(mesh, t, ["system:owner"]);
    await usersIn(mesh, t).suspendUser({ userId: suspended.id, reason: "on leave" });
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: owner.id }), Code.FailedPrecondition, "transfer ownership first");
    await activeUser(mesh, t, ["system:owner"]);
    assert.equal((await officer.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: owner.id })).request?.state, RequestState.RECEIVED);
  });

  test("is refused at approval when the other owner left meanwhile: the request stays verified and nothing is erased", async () => {
    const t = await newTenant(mesh);
    const owner = await activeUser(mesh, t, ["system:owner"]);
    const other = await activeUser(mesh, t, ["system:owner"]);
    const requester = requestsAs(mesh, t, officerPermissions, "usr_requester");
    const approver = requestsAs(mesh, t, officerPermissions, "usr_approver");
    const created = (await requester.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: owner.id })).request!;
    await requester.verifySubjectIdentity({ id: created.id, method: "ID seen" });
    await usersIn(mesh, t).suspendUser({ userId: other.id, reason: "left" });
    await refusedWith(approver.approveErasure({ id: created.id }), Code.FailedPrecondition, "transfer ownership first");
    const kept = (await requester.getDataSubjectRequest({ id: created.id })).request!;
    assert.equal(kept.state, RequestState.IDENTITY_VERIFIED);
    assert.equal(kept.approvedBy, "");
    assert.equal(kept.steps.length, 0, "no service was asked to erase anything");
    assert.equal((await usersIn(mesh, t).getUser({ userId: owner.id })).user?.id, owner.id);
    // Ownership transferred: the same request is approved and runs.
    await activeUser(mesh, t, ["system:owner"]);
    assert.equal((await approver.approveErasure({ id: created.id })).request?.state, RequestState.IN_PROGRESS);
    await requestReaches(requester, created.id, RequestState.COMPLETED);
  });

  test("that slips past approval is refused by identity's step first: the step and the request fail and no other service erased anything", async () => {
    const t = await newTenant(mesh);
    const owner = await activeUser(mesh, t, ["system:owner"]);
    const other = await activeUser(mesh, t, ["system:owner"]);
    const requester = requestsAs(mesh, t, officerPermissions, "usr_requester");
    const approver = requestsAs(mesh, t, officerPermissions, "usr_approver");
    const created = (await requester.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: owner.id })).request!;
    await requester.verifySubjectIdentity({ id: created.id, method: "ID seen" });
    // Approved a day ahead on compliance's clock: its steps are due tomorrow, so the co-owner leaves before any runs.
    mesh.clock.advance(day);
    try {
      await approver.approveErasure({ id: created.id });
    } finally {
      mesh.clock.advance(-day);
    }
    await usersIn(mesh, t).suspendUser({ userId: other.id, reason: "left" });
    mesh.clock.advance(day + 60_000);
    try {
      const failed = await requestReaches(requester, created.id, RequestState.FAILED);
      assert.match(failed.stateReason, /^identity: FailedPrecondition: .*last owner: transfer ownership first/);
      const identityStep = failed.steps.find((x) => x.service === "identity")!;
      assert.equal(identityStep.state, StepState.FAILED);
      assert.match(identityStep.lastError, lastOwner);
      for (const step of failed.steps.filter((x) => x.service !== "identity")) assert.equal(step.state, StepState.PENDING, `${step.service} erased nothing`);
      assert.equal((await usersIn(mesh, t).getUser({ userId: owner.id })).user?.id, owner.id, "the owner is still there");
    } finally {
      mesh.clock.advance(-(day + 60_000));
    }
  });
});

describe("DataSubjectRequestService.RejectDataSubjectRequest, ExtendDataSubjectRequest and CompleteRectification", () => {
  test("a request not started can be rejected with a reason; a started one cannot", async () => {
    const officer = requestsAs(mesh, tenant);
    const r = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id })).request!;
    await refusedWith(officer.rejectDataSubjectRequest({ id: r.id, reason: "" }), Code.InvalidArgument, "reason");
    const rejected = (await officer.rejectDataSubjectRequest({ id: r.id, reason: "identity could not be confirmed" })).request!;
    assert.equal(rejected.state, RequestState.REJECTED);
    assert.equal(rejected.stateReason, "identity could not be confirmed");
    await refusedWith(officer.rejectDataSubjectRequest({ id: r.id, reason: "again" }), Code.FailedPrecondition);
    await refusedWith(officer.rejectDataSubjectRequest({ id: "dsr_missing", reason: "x" }), Code.NotFound);
  });

  test("the due date moves by up to two months in all, with a reason", async () => {
    const officer = requestsAs(mesh, tenant);
    const r = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id })).request!;
    await refusedWith(officer.extendDataSubjectRequest({ id: r.id, months: 3, reason: "complex" }), Code.InvalidArgument, "months");
    const once = (await officer.extendDataSubjectRequest({ id: r.id, months: 1, reason: "many systems" })).request!;
    assert.equal(once.extensionMonths, 1);
    assert.ok(timestampDate(once.dueTime!) > timestampDate(r.dueTime!));
    const twice = (await officer.extendDataSubjectRequest({ id: r.id, months: 1, reason: "still many systems" })).request!;
    assert.equal(twice.extensionMonths, 2);
    await refusedWith(officer.extendDataSubjectRequest({ id: r.id, months: 1, reason: "more" }), Code.FailedPrecondition, "two months");
    await refusedWith(officer.extendDataSubjectRequest({ id: "dsr_missing", months: 1, reason: "x" }), Code.NotFound);
  });

  test("a rectification in progress is completed with a note", async () => {
    const officer = requestsAs(mesh, tenant);
    const r = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id })).request!;
    await refusedWith(officer.completeRectification({ id: r.id, note: "fixed" }), Code.FailedPrecondition);
    await officer.verifySubjectIdentity({ id: r.id, method: "mail" });
    const done = (await officer.completeRectification({ id: r.id, note: "display name corrected in identity" })).request!;
    assert.equal(done.state, RequestState.COMPLETED);
    assert.equal(done.stateReason, "display name corrected in identity");
    await refusedWith(officer.completeRectification({ id: "dsr_missing", note: "x" }), Code.NotFound);
  });
});

describe("DataSubjectRequestService legal holds", () => {
  test("a hold is listed until lifted; one in the past or of a bad category is refused", async () => {
    const officer = requestsAs(mesh, tenant);
    const until = timestampFromDate(new Date(Date.now() + 365 * day));
    const created = await officer.createLegalHold({ hold: { category: "billing_records", reason: "7 years", untilTime: until } });
    assert.ok(created.id.startsWith("lgh_"));
    assert.ok((await officer.listLegalHolds({})).holds.some((h) => h.id === created.id && h.hold?.category === "billing_records"));
    await refusedWith(officer.createLegalHold({ hold: { category: "billing_records", reason: "", untilTime: timestampFromDate(new Date(Date.now() - day)) } }), Code.InvalidArgument, "until_time");
    await refusedWith(officer.createLegalHold({ hold: { category: "Bad Category", reason: "", untilTime: until } }), Code.InvalidArgument, "category");
    await refusedWith(requestsAs(mesh, tenant, ["compliance.requests.read"]).createLegalHold({ hold: { category: "x", untilTime: until } }), Code.PermissionDenied);
    await officer.deleteLegalHold({ id: created.id });
    await refusedWith(officer.deleteLegalHold({ id: created.id }), Code.NotFound);
  });
});

describe("a rectification that names its corrections", () => {
  /** Waits until every step of the request is done and the saga has said what it left for an officer. */
  async function sagaLeaves(client: ReturnType<typeof requestsAs>, id: string): Promise<DataSubjectRequest> {
    const { eventually } = await import("../support/harness.js");
    let last: DataSubjectRequest | undefined;
    await eventually(async () => {
      last = (await client.getDataSubjectRequest({ id })).request;
      return last?.stateReason.includes("left for CompleteRectification") === true;
    }, 20_000, 100);
    return last!;
  }

  test("starts on identity verification without a second approval, identity applies it with its events, and no value is kept in plaintext outside identity", async () => {
    const person = await activeUser(mesh, tenant);
    const officer = requestsAs(mesh, tenant, ["compliance.requests.create", "compliance.requests.read", "compliance.requests.manage", "identity.users.update", ...systemRole("system:member")!.permissions]);
    const newEmail = uniqueEmail("corrected");
    const newName = `Dana Corrected ${Date.now()}`;
    const created = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: person.id, corrections: [{ field: "email", value: newEmail.toUpperCase() }, { field: "display_name", value: newName }] })).request!;
    assert.deepEqual(created.correctedFields, ["email", "display_name"]);
    const started = (await officer.verifySubjectIdentity({ id: created.id, method: "signed-in request" })).request!;
    assert.equal(started.state, RequestState.IN_PROGRESS, "no second person approves a rectification");
    assert.equal(started.approvedBy, "");
    const done = await requestReaches(officer, created.id, RequestState.COMPLETED);
    assert.deepEqual(done.steps.map((s) => s.service).sort(), ["audit", "compliance", "identity", "keys", "tenancy"]);
    assert.ok(done.steps.every((s) => s.state === StepState.DONE));
    const identity = done.steps.find((s) => s.service === "identity")!;
    assert.deepEqual(identity.rectifications.map((f) => [f.field, f.outcome]), [["email", RectificationOutcome.APPLIED], ["display_name", RectificationOutcome.APPLIED]]);
    for (const s of done.steps.filter((x) => x.service !== "identity")) assert.ok(s.rectifications.every((f) => f.outcome === RectificationOutcome.NOT_APPLICABLE), s.service);
    assert.match(done.stateReason, /corrected: email \(identity\); display_name \(identity\)/);
    const { user } = await usersIn(mesh, tenant).getUser({ userId: person.id });
    assert.equal(user?.email, newEmail);
    assert.equal(user?.displayName, newName);
    // identity's own events record the change; audit's trail has them (values sealed under the subject's key).
    const { adminQuery } = await import("../support/harness.js");
    const { fromBinary } = await import("@bufbuild/protobuf");
    const { EnvelopeSchema } = await import("@bulwark/contracts");
    const identityEvents = (await adminQuery<{ envelope: Buffer }>(`select envelope from "${mesh.identity.config.DATABASE_SCHEMA}".outbox order by created_at, id`)).map((r) => fromBinary(EnvelopeSchema, r.envelope)).filter((e) => e.aggregateId === person.id);
    const verbs = identityEvents.map((e) => e.type.slice(`${mesh.identity.prefix}.identity.`.length));
    assert.ok(verbs.includes("user.email_changed") && verbs.includes("user.updated"), verbs.join(","));
    await auditEntriesReach(mesh, tenant, "action = 'identity.user.email_changed' and resource_id = $2", person.id);
    await auditEntriesReach(mesh, tenant, "action = 'identity.user.updated' and resource_id = $2", person.id);
    const sealed = await adminQuery<{ n: string }>(`select count(*)::text as n from "${mesh.audit.config.DATABASE_SCHEMA}".entries where tenant_id = $1 and resource_id = $2 and action = 'identity.user.email_changed'`, [tenant, person.id]);
    assert.equal(sealed[0]?.n, "1");
    // Compliance's events name the fields only; the values are nowhere in plaintext but in identity's users.
    const complianceEnvelopes = await adminQuery<{ envelope: Buffer }>(`select envelope from "${mesh.compliance.config.DATABASE_SCHEMA}".outbox`);
    assert.ok(complianceEnvelopes.every((r) => !r.envelope.includes(newEmail) && !r.envelope.includes(newEmail.toUpperCase()) && !r.envelope.includes(newName)));
    const others = [mesh.tenancy, mesh.keys, mesh.audit, mesh.compliance].map((x) => x.config.DATABASE_SCHEMA);
    assert.deepEqual(await plaintextHits(others, newEmail), []);
    assert.deepEqual(await plaintextHits(others, newName), []);
    // The sealed values are deleted when the request ends.
    const [row] = await adminQuery<{ sealed: boolean }>(`select corrections is not null as sealed from "${mesh.compliance.config.DATABASE_SCHEMA}".dsr_requests where id = $1`, [created.id]);
    assert.equal(row?.sealed, false);
  });

  test("a correction no service holds, or one identity refuses, waits for CompleteRectification, which completes it", async () => {
    const person = await activeUser(mesh, tenant);
    const colleague = await activeUser(mesh, tenant);
    const officer = requestsAs(mesh, tenant, rectifierPermissions);
    const created = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: person.id, corrections: [{ field: "email", value: colleague.email }, { field: "postal_address", value: "1 Main Street" }] })).request!;
    await officer.verifySubjectIdentity({ id: created.id, method: "ID seen" });
    const waiting = await sagaLeaves(officer, created.id);
    assert.equal(waiting.state, RequestState.IN_PROGRESS);
    assert.ok(waiting.steps.every((s) => s.state === StepState.DONE));
    const identity = waiting.steps.find((s) => s.service === "identity")!;
    assert.deepEqual(identity.rectifications.map((f) => [f.field, f.outcome]), [["email", RectificationOutcome.REFUSED], ["postal_address", RectificationOutcome.NOT_APPLICABLE]]);
    assert.match(waiting.stateReason, /postal_address \(no service holds it\)/);
    assert.match(waiting.stateReason, /email \(identity: another user of the tenant has this email\)/);
    assert.ok(!waiting.stateReason.includes(colleague.email) && !waiting.stateReason.includes("Main Street"));
    assert.equal((await usersIn(mesh, tenant).getUser({ userId: person.id })).user?.email, person.email);
    const done = (await officer.completeRectification({ id: created.id, note: "postal address corrected in the billing system; email left as the subject agreed" })).request!;
    assert.equal(done.state, RequestState.COMPLETED);
    await refusedWith(officer.completeRectification({ id: created.id, note: "again" }), Code.FailedPrecondition);
  });

  test("while keys is down a rectification with corrections is refused UNAVAILABLE, and its steps wait for keys and then finish", async () => {
    const person = await activeUser(mesh, tenant);
    const officer = requestsAs(mesh, tenant, rectifierPermissions);
    const corrections = [{ field: "display_name", value: "Dana While Keys Slept" }];
    const created = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: person.id, corrections })).request!;
    await mesh.stopKeys();
    try {
      // Nothing is kept unsealed: without keys the values cannot be recorded.
      await refusedWith(officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: person.id, corrections }), Code.Unavailable);
      await officer.verifySubjectIdentity({ id: created.id, method: "signed-in request" });
      const { eventually } = await import("../support/harness.js");
      await eventually(async () => {
        const r = (await officer.getDataSubjectRequest({ id: created.id })).request!;
        return r.state === RequestState.IN_PROGRESS && r.steps.some((s) => s.state === StepState.RETRYING && s.lastError === "Unavailable: keys did not answer");
      }, 20_000, 100);
    } finally {
      await mesh.restartKeys();
    }
    const done = await requestReaches(officer, created.id, RequestState.COMPLETED, 30_000);
    assert.equal(done.steps.find((s) => s.service === "identity")?.rectifications[0]?.outcome, RectificationOutcome.APPLIED);
    assert.equal((await usersIn(mesh, tenant).getUser({ userId: person.id })).user?.displayName, "Dana While Keys Slept");
  });

  test("corrections are refused on another type, twice for a field, with a malformed email, a blank display name or a bad field name", async () => {
    const officer = requestsAs(mesh, tenant, rectifierPermissions);
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id, corrections: [{ field: "email", value: "a@example.com" }] }), Code.InvalidArgument, "corrections");
    await refusedWith(
      officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, corrections: [{ field: "display_name", value: "A" }, { field: "display_name", value: "B" }] }),
      Code.InvalidArgument,
      "corrections[1].field",
    );
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, corrections: [{ field: "email", value: "not an address" }] }), Code.InvalidArgument, "corrections[0].value");
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, corrections: [{ field: "display_name", value: "   " }] }), Code.InvalidArgument, "corrections[0].value");
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, corrections: [{ field: "Email", value: "a@example.com" }] }), Code.InvalidArgument, "field");
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, corrections: [{ field: "email", value: "" }] }), Code.InvalidArgument, "value");
    await refusedWith(officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: "usr_nobody", corrections: [{ field: "email", value: "a@example.com" }] }), Code.NotFound);
  });
});
