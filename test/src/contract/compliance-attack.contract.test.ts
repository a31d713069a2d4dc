/**
 * An attacker's contract tests of compliance: the "second person" and
 * "nobody decides on their own grants" rules must hold when one of the two
 * people is an API key. A key acts for its owner (keys verifies it as
 * `key_…`, but its permissions are its owner's), so a key and its owner are
 * one person: a user must not approve their own erasure with their own key,
 * nor keep their own admin grant in an access review with it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { AccessReviewDecision, AuditLogService, InactiveAccountState, RetentionCategory, RetentionService, UserService, AccessReviewScope, AccessReviewService, ApiKeyService, DataSubjectRequestService, Environment, RequestState, RequestType } from "@bulwark/contracts";
import { effectivePermissions } from "@bulwark/core";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { complianceContext, runInactiveAccountRule } from "@bulwark/compliance";
import { requestReaches } from "./support-compliance.js";
import { bootstrapToken, clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { activeUser, auditEntriesReach, newTenant, officerPermissions, startComplianceMesh, usersIn, type ComplianceMesh } from "./support-compliance.js";

let mesh: ComplianceMesh;
let tenant: string;
let owner: { id: string };

before(async () => {
  mesh = await startComplianceMesh();
  tenant = await newTenant(mesh);
  owner = await activeUser(mesh, tenant, ["system:owner"]);
});
after(async () => {
  await mesh?.stop();
});

/** A user's access token (signed in just now, so keys' step-up holds). */
function tokenOf(userId: string, permissions: Iterable<string> = effectivePermissions(["system:owner"])): string {
  return mesh.compliance.issueToken({ id: userId, kind: "user", tenantId: tenant, permissions: new Set(permissions), authTime: Math.floor(Date.now() / 1000) - 5 });
}

/** A real API key of `userId` holding `scopes`, created through keys. */
async function apiKeyOf(userId: string, scopes: string[]): Promise<string> {
  const keys = clientFor(ApiKeyService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: userId, kind: "user", tenantId: tenant, permissions: new Set(effectivePermissions(["system:owner"])), authTime: Math.floor(Date.now() / 1000) - 5 }));
  const { token } = await keys.createApiKey({ name: "automation", environment: Environment.LIVE, scopes });
  return token;
}

describe("ApproveErasure with an API key", () => {
  test("the requester's own API key is not a second person", async () => {
    const subject = await activeUser(mesh, tenant);
    const asOwner = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf(owner.id, officerPermissions));
    const created = (await asOwner.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: subject.id })).request!;
    await asOwner.verifySubjectIdentity({ id: created.id, method: "signed-in request" });
    const ownKey = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, await apiKeyOf(owner.id, ["compliance.erasures.approve"]));
    await refusedWith(ownKey.approveErasure({ id: created.id }), Code.PermissionDenied, "second person");
    const still = (await asOwner.getDataSubjectRequest({ id: created.id })).request!;
    assert.equal(still.state, RequestState.IDENTITY_VERIFIED);
    assert.equal(still.approvedBy, "");
  });

  test("an erasure recorded through a user's API key is not approved by that user", async () => {
    const subject = await activeUser(mesh, tenant);
    const key = await apiKeyOf(owner.id, ["compliance.requests.create", "compliance.erasures.create", "compliance.requests.manage"]);
    const asKey = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, key);
    const created = (await asKey.createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: subject.id })).request!;
    assert.ok(created.requestedBy.startsWith("key_"));
    await asKey.verifySubjectIdentity({ id: created.id, method: "ticket 7" });
    const asOwner = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf(owner.id, officerPermissions));
    await refusedWith(asOwner.approveErasure({ id: created.id }), Code.PermissionDenied, "second person");
    // Another person may.
    const other = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf("usr_secondofficer", officerPermissions));
    const approved = (await other.approveErasure({ id: created.id })).request!;
    assert.equal(approved.approvedBy, "usr_secondofficer");
  });
});

describe("DecideAccessReviewItem with an API key", () => {
  test("a reviewer's API key cannot decide on the reviewer's own grants", async () => {
    const manager = clientFor(AccessReviewService, mesh.compliance.baseUrl, tokenOf("usr_reviewmanager", ["compliance.access_reviews.manage", "compliance.access_reviews.read"]));
    const { review } = await manager.createAccessReview({ name: "admins", scope: AccessReviewScope.ADMINS });
    const own = review!.items.find((i) => i.userId === owner.id && i.roleId === "system:owner");
    assert.ok(own !== undefined);
    const asKey = clientFor(AccessReviewService, mesh.compliance.baseUrl, await apiKeyOf(owner.id, ["compliance.access_reviews.decide"]));
    await refusedWith(asKey.decideAccessReviewItem({ reviewId: review!.id, itemId: own.id, decision: AccessReviewDecision.KEEP }), Code.PermissionDenied, "own grants");
  });
});

describe("DecideAccessReviewItem REVOKE", () => {
  test("a reviewer cannot revoke a grant of someone more privileged than themselves, as identity would refuse them", async () => {
    const admin = await activeUser(mesh, tenant, ["system:admin"]);
    const manager = clientFor(AccessReviewService, mesh.compliance.baseUrl, tokenOf("usr_reviewmanager2", ["compliance.access_reviews.manage"]));
    const { review } = await manager.createAccessReview({ name: "admins again", scope: AccessReviewScope.ADMINS });
    const grant = review!.items.find((i) => i.userId === admin.id && i.roleId === "system:admin")!;
    // A narrow reviewer role: deciding reviews and assigning roles, nothing else.
    const narrow = clientFor(AccessReviewService, mesh.compliance.baseUrl, tokenOf("usr_narrowreviewer", ["compliance.access_reviews.decide", "identity.roles.assign"]));
    await refusedWith(narrow.decideAccessReviewItem({ reviewId: review!.id, itemId: grant.id, decision: AccessReviewDecision.REVOKE }), Code.PermissionDenied, "more privileged");
    // Keeping it needs no identity permission; a reviewer holding all the admin holds may revoke.
    await narrow.decideAccessReviewItem({ reviewId: review!.id, itemId: grant.id, decision: AccessReviewDecision.KEEP });
    const peer = clientFor(AccessReviewService, mesh.compliance.baseUrl, tokenOf("usr_peerreviewer", effectivePermissions(["system:admin"])));
    const { item } = await peer.decideAccessReviewItem({ reviewId: review!.id, itemId: grant.id, decision: AccessReviewDecision.REVOKE });
    assert.equal(item?.decision, AccessReviewDecision.REVOKE);
  });
});

describe("compliance's own changes in the audit trail", () => {
  test("lifting a legal hold and recording a request reach the tenant's trail, and the subject's words are not kept plainly", async () => {
    const officer = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf("usr_holdofficer", officerPermissions));
    const { id } = await officer.createLegalHold({ hold: { category: "audit_entries", reason: "litigation 12", untilTime: timestampFromDate(new Date(Date.now() + 86_400_000 * 365)) } });
    await officer.deleteLegalHold({ id });
    await auditEntriesReach(mesh, tenant, "action = $2", "compliance.legal_hold.deleted");
    const subject = await activeUser(mesh, tenant);
    const words = "call me on 555-0199, Evelyn Quarrington";
    const created = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, details: words })).request!;
    await auditEntriesReach(mesh, tenant, "resource_id = $2", created.id);
    const audit = clientFor(AuditLogService, mesh.audit.baseUrl, mesh.audit.issueToken({ id: "usr_auditor", kind: "user", tenantId: tenant, permissions: new Set(["audit.records.list"]) }));
    const { entries } = await audit.listEntries({ resourceId: created.id });
    assert.ok(entries.length > 0);
    const plain = entries.flatMap((e) => e.changedFields.map((f) => (f.newValue?.kind.case === "plain" ? `${f.name}=${f.newValue.kind.value}` : "")));
    assert.ok(plain.some((p) => p.includes(subject.id)), "the request's subject is named");
    assert.deepEqual(plain.filter((p) => p.includes("Quarrington")), [], "the subject's own words are not kept in plaintext");
  });
});

describe("the inactive-account rule under a legal hold", () => {
  test("an inactive account is not deleted while a legal hold on the profile is in force, and is once it is lifted", async () => {
    const t = await newTenant(mesh);
    const asOfficer = (perms: string[]) => mesh.compliance.issueToken({ id: "usr_retentionofficer", kind: "user", tenantId: t, permissions: new Set(perms) });
    await clientFor(RetentionService, mesh.compliance.baseUrl, asOfficer(["compliance.retention.manage"])).setRetentionRule({ category: RetentionCategory.INACTIVE_ACCOUNTS, period: { seconds: BigInt(365 * 86_400), nanos: 0 }, enabled: true });
    const idle = await activeUser(mesh, t);
    const holds = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, asOfficer(["compliance.legal_holds.manage"]));
    const { id } = await holds.createLegalHold({ hold: { category: "profile", reason: "litigation 9", untilTime: timestampFromDate(new Date(Date.now() + 3 * 365 * 86_400_000)) } });
    const ctx = complianceContext(mesh.compliance.running.deps);
    const runAt = (day: number) => runInactiveAccountRule(ctx, t, 365 * 86_400, new Date(Date.now() + day * 86_400_000), mesh.compliance.running.deps.logger);
    await runAt(340);
    const held = await runAt(400);
    assert.equal(held.deleted, 0, "nothing is deleted under the hold");
    const users = clientFor(UserService, mesh.identity.baseUrl, bootstrapToken, "grpc", { "bulwark-tenant": t });
    assert.equal((await users.getUser({ userId: idle.id })).user?.id, idle.id);
    await holds.deleteLegalHold({ id });
    assert.ok((await runAt(401)).deleted >= 1);
    await refusedWith(users.getUser({ userId: idle.id }), Code.NotFound);
    const { accounts } = await clientFor(RetentionService, mesh.compliance.baseUrl, asOfficer(["compliance.retention.read"])).listInactiveAccounts({ includeSettled: true });
    assert.equal(accounts.find((a) => a.userId === idle.id)?.state, InactiveAccountState.DELETED);
  });
});

describe("a data subject's export", () => {
  test("never gives the subject the user agent of an admin who acted on them", async () => {
    const subject = await activeUser(mesh, tenant);
    const admin = await activeUser(mesh, tenant, ["system:admin"]);
    const adminUsers = clientFor(UserService, mesh.identity.baseUrl, mesh.identity.issueToken({ id: admin.id, kind: "user", tenantId: tenant, permissions: new Set(effectivePermissions(["system:admin"])), authTime: Math.floor(Date.now() / 1000) - 5 }), "grpc", { "user-agent": "AdminBrowser/9.9 (admin-workstation-7)" });
    await adminUsers.updateUser({ userId: subject.id, displayName: "Dana Renamed", updateMask: { paths: ["display_name"] } });
    await auditEntriesReach(mesh, tenant, "resource_id = $2 and action = 'identity.user.updated'", subject.id);
    const officer = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf("usr_exportofficer", officerPermissions));
    const created = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!;
    await officer.verifySubjectIdentity({ id: created.id, method: "signed-in request" });
    await requestReaches(officer, created.id, RequestState.COMPLETED);
    const chunks: Uint8Array[] = [];
    for await (const m of officer.downloadExport({ id: created.id })) if (m.part.case === "chunk") chunks.push(m.part.value);
    const bundle = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { services: Record<string, { data: { audit_entries?: { action: string; personal: Record<string, string> }[] } }> };
    const entries = bundle.services["audit"]!.data.audit_entries!;
    const updated = entries.find((e) => e.action === "identity.user.updated");
    assert.ok(updated !== undefined, "the admin's change is in the subject's export");
    assert.ok(!JSON.stringify(entries).includes("AdminBrowser"), "another person's user agent is not given to the subject");
  });

  test("includes a request about the subject filed by an officer, with the subject's words and without the officer's address", async () => {
    const subject = await activeUser(mesh, tenant);
    const officer = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf(`usr_wordsofficer${Date.now()}`, officerPermissions), "grpc", { "user-agent": "OfficerBrowser/3.1" });
    const words = `a postal address for ${subject.id}`;
    const filed = (await officer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: subject.id, details: words })).request!;
    await auditEntriesReach(mesh, tenant, "resource_id = $2 and action = 'compliance.request.received'", filed.id);
    const exporting = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!;
    await officer.verifySubjectIdentity({ id: exporting.id, method: "signed-in request" });
    await requestReaches(officer, exporting.id, RequestState.COMPLETED);
    const chunks: Uint8Array[] = [];
    for await (const m of officer.downloadExport({ id: exporting.id })) if (m.part.case === "chunk") chunks.push(m.part.value);
    const bundle = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { services: Record<string, { data: { audit_entries?: { action: string; resource_id: string; personal: Record<string, string> }[] } }> };
    const entries = bundle.services["audit"]!.data.audit_entries!;
    const received = entries.find((e) => e.action === "compliance.request.received" && e.resource_id === filed.id);
    assert.ok(received !== undefined, "an entry sealed under the subject is in their export, though they neither acted nor are its resource");
    assert.deepEqual(received.personal, { "changed_fields.request.details.new": words }, "the subject's words only: the officer's address and user agent are the officer's");
    assert.ok(!JSON.stringify(entries).includes("OfficerBrowser"));
  });
});

describe("a rectification's corrections, applied later by compliance as itself", () => {
  test("cannot move a more privileged user's email, nor be filed or started without identity.users.update", async () => {
    const victim = await activeUser(mesh, tenant, ["system:owner"]);
    const member = await activeUser(mesh, tenant);
    const takeover = [{ field: "email", value: "attacker@evil.example" }];
    // An officer with every compliance permission and identity.users.update, but an Admin's rights at most.
    const adminOfficer = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf(`usr_attacker${Date.now()}`, [...officerPermissions, ...effectivePermissions(["system:admin"])]));
    await refusedWith(adminOfficer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: victim.id, corrections: takeover }), Code.PermissionDenied, "more privileged");
    // Without identity.users.update nobody's data is corrected, not even a member's.
    const plainOfficer = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf(`usr_officer${Date.now()}`, officerPermissions));
    await refusedWith(plainOfficer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: member.id, corrections: takeover }), Code.PermissionDenied, "identity.users.update");
    // A rectification without corrections (completed by hand) stays open to a plain officer.
    const manual = (await plainOfficer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: victim.id, details: "postal address" })).request!;
    assert.equal(manual.state, RequestState.RECEIVED);
    // Filed by an Owner-level officer, it cannot be started by a verifier who could not have filed it.
    const ownerOfficer = clientFor(DataSubjectRequestService, mesh.compliance.baseUrl, tokenOf(owner.id, [...officerPermissions, ...effectivePermissions(["system:owner"])]));
    const filed = (await ownerOfficer.createDataSubjectRequest({ type: RequestType.RECTIFICATION, subjectId: victim.id, corrections: [{ field: "display_name", value: "Vic Owner" }] })).request!;
    await refusedWith(adminOfficer.verifySubjectIdentity({ id: filed.id, method: "ID seen" }), Code.PermissionDenied, "more privileged");
    assert.equal((await ownerOfficer.getDataSubjectRequest({ id: filed.id })).request?.state, RequestState.RECEIVED);
    // The victim's email never moved.
    const { user } = await usersIn(mesh, tenant).getUser({ userId: victim.id });
    assert.equal(user?.email, victim.email);
  });
});
