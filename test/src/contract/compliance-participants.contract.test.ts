/**
 * The contract of bulwark.compliance.v1.DataSubjectParticipant as tenancy,
 * identity, keys, audit and compliance serve it, and of TenantDeletionService:
 * only compliance's own service assertion may call a participant, and a
 * closed tenant's deletion is visible to platform operators only.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ApiKeyService, DataSubjectParticipant, EncryptionService, Environment, ErasureOutcome, RectificationOutcome } from "@bulwark/contracts";
import { bootstrapToken, clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { activeUser, auditEntriesReach, deletionsAsOperator, newTenant, startComplianceMesh, usersIn, type ComplianceMesh } from "./support-compliance.js";
import { uniqueEmail } from "./support-identity.js";
import { adminQuery } from "../support/harness.js";
import { createDataSubjectParticipantClient } from "@bulwark/contracts";
import { createServiceTransport } from "@bulwark/server";
import { effectivePermissions, runAsPlatform, runAsService, ServiceAssertions } from "@bulwark/core";

let mesh: ComplianceMesh;
let tenant: string;

before(async () => {
  mesh = await startComplianceMesh();
  tenant = await newTenant(mesh);
});
after(async () => {
  await mesh?.stop();
});

/** A participant client signed as compliance (the mesh's development keys), as the saga calls it. */
function asCompliance(baseUrl: string, audience: string) {
  const client = createDataSubjectParticipantClient(createServiceTransport(baseUrl, ServiceAssertions.development("compliance"), audience, { attempts: 1 }));
  return <T>(fn: (c: typeof client) => Promise<T>) => runAsService("compliance", undefined, () => runAsPlatform("contract test", () => fn(client)));
}

describe("DataSubjectParticipant", () => {
  test("identity describes, exports and erases a user's data for compliance", async () => {
    const person = await activeUser(mesh, tenant);
    const call = asCompliance(mesh.identity.baseUrl, "identity");
    const subject = { tenantId: tenant, subjectId: person.id };
    const described = await call((c) => c.describeSubjectData({ subject }));
    assert.equal(described.service, "identity");
    assert.equal(described.categories.find((x) => x.name === "profile")?.recordCount, 1n);
    const exported = await call((c) => c.exportSubjectData({ subject }));
    assert.equal((JSON.parse(exported.documentJson) as { profile: { email: string }[] }).profile[0]?.email, person.email);
    assert.equal((JSON.parse(exported.schemaJson) as { $schema: string }).$schema, "https://json-schema.org/draft/2020-12/schema");
    const erasedOnce = await call((c) => c.eraseSubjectData({ subject, requestId: "dsr_test" }));
    assert.equal(erasedOnce.categories.find((x) => x.category === "profile")?.outcome, ErasureOutcome.ERASED);
    const again = await call((c) => c.eraseSubjectData({ subject, requestId: "dsr_test" }));
    assert.equal(again.categories.find((x) => x.category === "profile")?.outcome, ErasureOutcome.NOTHING_HELD);
    await refusedWith(call((c) => c.exportSubjectData({ subject: { tenantId: tenant, subjectId: "" } })), Code.InvalidArgument, "subject_id");
  });

  test("identity refuses to erase the tenant's last owner with FAILED_PRECONDITION (transfer ownership first) and erases nothing", async () => {
    const t = await newTenant(mesh);
    const owner = await activeUser(mesh, t, ["system:owner"]);
    const call = asCompliance(mesh.identity.baseUrl, "identity");
    const subject = { tenantId: t, subjectId: owner.id };
    await refusedWith(call((c) => c.eraseSubjectData({ subject, requestId: "dsr_owner" })), Code.FailedPrecondition, "transfer ownership first");
    assert.equal((await call((c) => c.describeSubjectData({ subject }))).categories.find((x) => x.name === "profile")?.recordCount, 1n, "the owner is still there");
    await activeUser(mesh, t, ["system:owner"]);
    const erased = await call((c) => c.eraseSubjectData({ subject, requestId: "dsr_owner" }));
    assert.equal(erased.categories.find((x) => x.category === "profile")?.outcome, ErasureOutcome.ERASED, "with another active owner the erasure runs");
  });

  test("tenancy says it holds nothing about a person", async () => {
    const call = asCompliance(mesh.tenancy.baseUrl, "tenancy");
    const out = await call((c) => c.describeSubjectData({ subject: { tenantId: tenant, subjectId: "usr_x" } }));
    assert.deepEqual(out.categories, []);
    const erased = await call((c) => c.eraseSubjectData({ subject: { tenantId: tenant, subjectId: "usr_x" } }));
    assert.equal(erased.categories[0]?.outcome, ErasureOutcome.NOTHING_HELD);
  });

  test("tenancy's erasure of a tenant retires its slug: CreateTenant refuses it for good, and the tombstone holds no personal data", async () => {
    const { uniqueSlug } = await import("../support/harness.js");
    const { Region } = await import("@bulwark/contracts");
    const slug = uniqueSlug("gone");
    const { tenant: doomed } = await mesh.tenancyOps.createTenant({ slug, displayName: "Dana Doe Consulting", region: Region.EU });
    const call = asCompliance(mesh.tenancy.baseUrl, "tenancy");
    const out = await call((c) => c.eraseTenantData({ tenantId: doomed!.id, deletionId: "tdl_test" }));
    assert.equal(out.categories[0]?.outcome, ErasureOutcome.ERASED);
    await refusedWith(mesh.tenancyOps.getTenant({ tenantId: doomed!.id }), Code.NotFound);
    await refusedWith(mesh.tenancyOps.resolveTenant({ slug }), Code.NotFound);
    await refusedWith(mesh.tenancyOps.createTenant({ slug, displayName: "Someone Else", region: Region.EU }), Code.AlreadyExists, slug);
    // Repeating the erasure is harmless and the slug stays retired.
    assert.equal((await call((c) => c.eraseTenantData({ tenantId: doomed!.id, deletionId: "tdl_test" }))).categories[0]?.outcome, ErasureOutcome.NOTHING_HELD);
    await refusedWith(mesh.tenancyOps.createTenant({ slug, displayName: "Someone Else", region: Region.US }), Code.AlreadyExists);
    const rows = await adminQuery<Record<string, unknown>>(`select * from "${mesh.tenancy.config.DATABASE_SCHEMA}".retired_slugs where slug = $1`, [slug]);
    assert.equal(rows.length, 1);
    assert.deepEqual(Object.keys(rows[0]!).sort(), ["deletion_id", "retired_at", "slug", "tenant_id"]);
    assert.ok(!JSON.stringify(rows[0]).includes("Dana Doe"));
    // A slug never used is still free.
    const fresh = uniqueSlug("fresh");
    assert.equal((await mesh.tenancyOps.createTenant({ slug: fresh, displayName: "Fresh", region: Region.EU })).tenant?.slug, fresh);
  });

  test("keys destroys the subject's key ring unless a hold on audit entries keeps it", async () => {
    const call = asCompliance(`http://127.0.0.1:${mesh.keysPort}`, "keys");
    const subject = { tenantId: tenant, subjectId: "usr_keyring" };
    const held = await call((c) => c.eraseSubjectData({ subject, legalHolds: [{ category: "audit_entries", reason: "litigation" }] }));
    assert.equal(held.categories.find((x) => x.category === "subject_key")?.outcome, ErasureOutcome.RETAINED_LEGAL_HOLD);
    const erased = await call((c) => c.eraseSubjectData({ subject }));
    assert.equal(erased.categories.find((x) => x.category === "subject_key")?.outcome, ErasureOutcome.ERASED);
  });

  test("keys' erasure of a user destroys the rings of their API keys too (audit seals a key's call values under its id)", async () => {
    const owner = await activeUser(mesh, tenant, ["system:admin"]);
    const token = mesh.keys.issueToken({ id: owner.id, kind: "user", tenantId: tenant, permissions: new Set([...effectivePermissions(["system:admin"]), "keys.encryption.encrypt", "keys.encryption.decrypt"]), authTime: Math.floor(Date.now() / 1000) - 5 });
    const { key } = await clientFor(ApiKeyService, `http://127.0.0.1:${mesh.keysPort}`, token).createApiKey({ name: "ci deploys", environment: Environment.LIVE, scopes: ["read"] });
    const encryption = clientFor(EncryptionService, `http://127.0.0.1:${mesh.keysPort}`, token);
    const { ciphertext } = await encryption.encrypt({ plaintext: Buffer.from("10.3.3.3"), purpose: "audit.personal", subjectId: key!.id });
    assert.equal(Buffer.from((await encryption.decrypt({ ciphertext, purpose: "audit.personal" })).plaintext).toString(), "10.3.3.3");
    const erased = await asCompliance(`http://127.0.0.1:${mesh.keysPort}`, "keys")((c) => c.eraseSubjectData({ subject: { tenantId: tenant, subjectId: owner.id } }));
    const ring = erased.categories.find((x) => x.category === "subject_key");
    assert.deepEqual([ring?.outcome, ring?.recordCount], [ErasureOutcome.ERASED, 2n], "the owner's ring and their key's");
    await refusedWith(encryption.decrypt({ ciphertext, purpose: "audit.personal" }), Code.FailedPrecondition);
  });

  test("audit exports the subject's entries decrypted, keeps them on erasure, and deletes a deleted tenant's trail", async () => {
    const person = await activeUser(mesh, tenant);
    const colleague = await activeUser(mesh, tenant);
    await auditEntriesReach(mesh, tenant, "resource_type = 'user' and resource_id = $2", person.id);
    await auditEntriesReach(mesh, tenant, "resource_type = 'user' and resource_id = $2", colleague.id);
    const call = asCompliance(mesh.audit.baseUrl, "audit");
    const subject = { tenantId: tenant, subjectId: person.id };
    const described = await call((c) => c.describeSubjectData({ subject }));
    assert.equal(described.service, "audit");
    const category = described.categories.find((x) => x.name === "audit_entries");
    assert.ok(category !== undefined && category.recordCount >= 1n);
    const exported = await call((c) => c.exportSubjectData({ subject }));
    const doc = JSON.parse(exported.documentJson) as { audit_entries: { entry_id: string; actor_id: string; resource_id: string; personal: Record<string, string> }[] };
    assert.equal(BigInt(doc.audit_entries.length), exported.recordCount);
    assert.equal(exported.recordCount, category.recordCount);
    assert.ok(doc.audit_entries.every((e) => e.actor_id === person.id || e.resource_id === person.id));
    assert.ok(doc.audit_entries.some((e) => Object.values(e.personal).includes(person.email)), "the subject's email is decrypted in the export");
    assert.ok(!exported.documentJson.includes(colleague.id) && !exported.documentJson.includes(colleague.email));
    const schema = JSON.parse(exported.schemaJson) as { $schema: string; properties: Record<string, unknown> };
    assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
    assert.deepEqual(Object.keys(schema.properties), ["audit_entries"]);
    // Erasure keeps the entries (keys' shredding makes them unreadable); a hold is reported as such.
    const held = await call((c) => c.eraseSubjectData({ subject, legalHolds: [{ category: "audit_entries", reason: "litigation" }] }));
    assert.equal(held.categories[0]?.outcome, ErasureOutcome.RETAINED_LEGAL_HOLD);
    const kept = await call((c) => c.eraseSubjectData({ subject, requestId: "dsr_test" }));
    assert.equal(kept.categories[0]?.category, "audit_entries");
    assert.equal(kept.categories[0]?.outcome, ErasureOutcome.ERASED);
    assert.match(kept.categories[0]?.note ?? "", /kept.*verifiable.*unreadable/);
    assert.equal((await call((c) => c.describeSubjectData({ subject }))).categories[0]?.recordCount, category.recordCount);
    await refusedWith(call((c) => c.describeSubjectData({ subject: { tenantId: "", subjectId: person.id } })), Code.InvalidArgument, "tenant_id");
    // A tenant's erasure removes its whole trail and leaves another tenant's alone.
    const gone = await newTenant(mesh);
    await auditEntriesReach(mesh, gone, "action <> $2", "");
    const schemaName = mesh.audit.config.DATABASE_SCHEMA;
    await call((c) => c.eraseTenantData({ tenantId: gone, deletionId: "tdl_test" }));
    for (const table of ["entries", "leaves", "tree_nodes", "checkpoints"]) {
      assert.equal((await adminQuery(`select 1 from "${schemaName}".${table} where tenant_id = $1`, [gone])).length, 0, table);
    }
    assert.ok((await adminQuery(`select 1 from "${schemaName}".entries where tenant_id = $1`, [tenant])).length > 0);
    const again = await call((c) => c.eraseTenantData({ tenantId: gone }));
    assert.equal(again.categories.find((x) => x.category === "audit_entries")?.outcome, ErasureOutcome.NOTHING_HELD);
    await refusedWith(call((c) => c.eraseTenantData({ tenantId: "" })), Code.InvalidArgument, "tenant_id");
  });

  test("identity rectifies the email and display name it holds, refuses a taken email, and a repeat changes nothing", async () => {
    const person = await activeUser(mesh, tenant);
    const colleague = await activeUser(mesh, tenant);
    const call = asCompliance(mesh.identity.baseUrl, "identity");
    const subject = { tenantId: tenant, subjectId: person.id };
    const email = uniqueEmail("rectified");
    const corrections = [
      { field: "email", value: ` ${email.toUpperCase()} ` },
      { field: "display_name", value: "Dana Rectified" },
      { field: "postal_address", value: "1 Main Street" },
    ];
    const out = await call((c) => c.rectifySubjectData({ subject, requestId: "dsr_test", corrections }));
    assert.equal(out.service, "identity");
    assert.deepEqual(out.fields.map((f) => [f.field, f.outcome]), [["email", RectificationOutcome.APPLIED], ["display_name", RectificationOutcome.APPLIED], ["postal_address", RectificationOutcome.NOT_APPLICABLE]]);
    const { user } = await usersIn(mesh, tenant).getUser({ userId: person.id });
    assert.equal(user?.email, email);
    assert.equal(user?.displayName, "Dana Rectified");
    const again = await call((c) => c.rectifySubjectData({ subject, requestId: "dsr_test", corrections }));
    assert.deepEqual(again.fields.map((f) => f.outcome), [RectificationOutcome.UNCHANGED, RectificationOutcome.UNCHANGED, RectificationOutcome.NOT_APPLICABLE]);
    const taken = await call((c) => c.rectifySubjectData({ subject, corrections: [{ field: "email", value: colleague.email }] }));
    assert.equal(taken.fields[0]?.outcome, RectificationOutcome.REFUSED);
    assert.ok(!taken.fields[0]!.note.includes(colleague.email), "the note never carries the value");
    assert.equal((await usersIn(mesh, tenant).getUser({ userId: person.id })).user?.email, email);
    const gone = await call((c) => c.rectifySubjectData({ subject: { tenantId: tenant, subjectId: "usr_nobody" }, corrections: [{ field: "display_name", value: "X" }] }));
    assert.equal(gone.fields[0]?.outcome, RectificationOutcome.NOTHING_HELD);
    await refusedWith(call((c) => c.rectifySubjectData({ subject: { tenantId: tenant, subjectId: "" }, corrections })), Code.InvalidArgument, "subject_id");
    await refusedWith(call((c) => c.rectifySubjectData({ subject, corrections: [{ field: "email", value: "not an address" }] })), Code.InvalidArgument, "corrections[0].value");
    await refusedWith(call((c) => c.rectifySubjectData({ subject, corrections: [{ field: "display_name", value: " " }] })), Code.InvalidArgument, "corrections[0].value");
    await refusedWith(call((c) => c.rectifySubjectData({ subject, corrections: [{ field: "email", value: email }, { field: "email", value: email }] })), Code.InvalidArgument, "corrections[1].field");
    await refusedWith(call((c) => c.rectifySubjectData({ subject, corrections: [{ field: "Bad Field", value: "x" }] })), Code.InvalidArgument, "field");
  });

  test("tenancy, keys, audit and compliance hold no correctable field and say so per field", async () => {
    const subject = { tenantId: tenant, subjectId: "usr_x" };
    const corrections = [{ field: "email", value: "x@example.test" }, { field: "display_name", value: "X" }];
    for (const [service, url] of [["tenancy", mesh.tenancy.baseUrl], ["keys", `http://127.0.0.1:${mesh.keysPort}`], ["audit", mesh.audit.baseUrl], ["compliance", mesh.compliance.baseUrl]] as const) {
      const out = await asCompliance(url, service)((c) => c.rectifySubjectData({ subject, requestId: "dsr_test", corrections }));
      assert.equal(out.service, service);
      assert.deepEqual(out.fields.map((f) => [f.field, f.outcome]), [["email", RectificationOutcome.NOT_APPLICABLE], ["display_name", RectificationOutcome.NOT_APPLICABLE]], service);
      await refusedWith(asCompliance(url, service)((c) => c.rectifySubjectData({ subject: { tenantId: "", subjectId: "usr_x" }, corrections })), Code.InvalidArgument, "tenant_id");
      await refusedWith(clientFor(DataSubjectParticipant, url, bootstrapToken).rectifySubjectData({ subject, corrections }), Code.PermissionDenied, "compliance");
      await refusedWith(clientFor(DataSubjectParticipant, url).rectifySubjectData({ subject, corrections }), Code.Unauthenticated);
    }
  });

  test("nobody but compliance may call a participant: not a tenant's owner, not an operator, not another service", async () => {
    const subject = { tenantId: tenant, subjectId: "usr_x" };
    const owner = mesh.identity.issueToken({ id: "usr_owner", kind: "user", tenantId: tenant, permissions: new Set(["*"]) });
    await refusedWith(clientFor(DataSubjectParticipant, mesh.identity.baseUrl, owner).exportSubjectData({ subject }), Code.PermissionDenied);
    await refusedWith(clientFor(DataSubjectParticipant, mesh.identity.baseUrl, bootstrapToken).exportSubjectData({ subject }), Code.PermissionDenied, "compliance");
    await refusedWith(clientFor(DataSubjectParticipant, mesh.tenancy.baseUrl, bootstrapToken).eraseTenantData({ tenantId: tenant }), Code.PermissionDenied, "compliance");
    await refusedWith(clientFor(DataSubjectParticipant, mesh.compliance.baseUrl, bootstrapToken).describeSubjectData({ subject }), Code.PermissionDenied, "compliance");
    await refusedWith(clientFor(DataSubjectParticipant, mesh.audit.baseUrl, bootstrapToken).exportSubjectData({ subject }), Code.PermissionDenied, "compliance");
    await refusedWith(clientFor(DataSubjectParticipant, mesh.audit.baseUrl, mesh.audit.issueToken({ id: "usr_owner", kind: "user", tenantId: tenant, permissions: new Set(["*"]) })).eraseTenantData({ tenantId: tenant }), Code.PermissionDenied);
    await refusedWith(clientFor(DataSubjectParticipant, mesh.audit.baseUrl).describeSubjectData({ subject }), Code.Unauthenticated);
    const identityToAudit = createDataSubjectParticipantClient(createServiceTransport(mesh.audit.baseUrl, ServiceAssertions.development("identity"), "audit", { attempts: 1 }));
    // identity holds no grant on audit: its platform-scope assertion is not even accepted as a credential.
    await refusedWith(runAsService("identity", undefined, () => runAsPlatform("test", () => identityToAudit.eraseSubjectData({ subject }))), Code.Unauthenticated);
    const asIdentity = createDataSubjectParticipantClient(createServiceTransport(`http://127.0.0.1:${mesh.keysPort}`, ServiceAssertions.development("identity"), "keys", { attempts: 1 }));
    await refusedWith(runAsService("identity", undefined, () => runAsPlatform("test", () => asIdentity.eraseSubjectData({ subject }))), Code.PermissionDenied);
    await refusedWith(clientFor(DataSubjectParticipant, mesh.identity.baseUrl).exportSubjectData({ subject }), Code.Unauthenticated);
    await refusedWith(clientFor(DataSubjectParticipant, mesh.identity.baseUrl, owner).rectifySubjectData({ subject, corrections: [{ field: "email", value: "x@example.test" }] }), Code.PermissionDenied);
    await refusedWith(clientFor(DataSubjectParticipant, mesh.identity.baseUrl, bootstrapToken).rectifySubjectData({ subject, corrections: [{ field: "email", value: "x@example.test" }] }), Code.PermissionDenied, "compliance");
  });
});

describe("TenantDeletionService.GetTenantDeletion", () => {
  test("a tenant never closed has no deletion; a tenant's principal may not ask", async () => {
    await refusedWith(deletionsAsOperator(mesh).getTenantDeletion({ tenantId: tenant }), Code.NotFound);
    await refusedWith(deletionsAsOperator(mesh).getTenantDeletion({ tenantId: "" }), Code.InvalidArgument, "tenant_id");
    const { TenantDeletionService } = await import("@bulwark/contracts");
    const user = mesh.compliance.issueToken({ id: "usr_u", kind: "user", tenantId: tenant, permissions: new Set(["compliance.tenant_deletions.read"]) });
    await refusedWith(clientFor(TenantDeletionService, mesh.compliance.baseUrl, user).getTenantDeletion({ tenantId: tenant }), Code.PermissionDenied);
  });
});
