/**
 * Compliance across the mesh, end to end on real Postgres and NATS with
 * tenancy, keys, identity, audit and compliance running: an export holds
 * the subject's data from every service (their audit entries decrypted)
 * and nothing of anyone else; after an erasure no text column of any
 * schema holds the subject's email, what was encrypted under their key no
 * longer opens, and their audit entries still verify against a signed
 * checkpoint with their personal values unreadable; a participant stopped
 * during a request makes it wait and then finish; a closed tenant is gone
 * from every service after its grace period (its audit trail and
 * checkpoints too), and a reactivated one stays.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { nuid } from "@nats-io/nuid";
import { ActorType, ApiKeyService, AuditEntrySchema, ErasureOutcome, AuditLogService, EncryptionService, Environment, Outcome, Region, RequestState, RequestType, StepState, TenantDeletionState, type AuditEntry } from "@bulwark/contracts";
import { effectivePermissions } from "@bulwark/core";
import { leafHash, openCheckpoint, parseVerifierKey, verifyInclusion } from "@bulwark/tlog";
import { adminQuery, clientFor, eventually } from "../support/harness.js";
import { activeUser, auditEntriesReach, deletionsAsOperator, newTenant, plaintextHits, requestReaches, requestsAs, schemasOf, startComplianceMesh, type ComplianceMesh } from "../contract/support-compliance.js";

let mesh: ComplianceMesh;
const day = 86_400_000;

before(async () => {
  mesh = await startComplianceMesh();
});
after(async () => {
  await mesh?.stop();
});

/** A developer of the tenant with an API key and something encrypted under their subject key. */
async function personWithData(tenantId: string): Promise<{ id: string; email: string; keyId: string; sealed: Uint8Array }> {
  const person = await activeUser(mesh, tenantId, ["system:developer"]);
  const token = mesh.keys.issueToken({ id: person.id, kind: "user", tenantId, permissions: new Set(effectivePermissions(["system:developer"])), authTime: Math.floor(Date.now() / 1000) - 10 });
  const key = await clientFor(ApiKeyService, `http://127.0.0.1:${mesh.keysPort}`, token).createApiKey({ name: "deploys", environment: Environment.LIVE, scopes: ["keys.encryption.encrypt"] });
  const sealed = await clientFor(EncryptionService, `http://127.0.0.1:${mesh.keysPort}`, token).encrypt({ plaintext: new TextEncoder().encode(`home address of ${person.id}`), purpose: "audit.record", subjectId: person.id });
  // Audit has recorded the user's creation and their API key.
  await auditEntriesReach(mesh, tenantId, "resource_type = 'user' and resource_id = $2", person.id);
  await auditEntriesReach(mesh, tenantId, "actor_id = $2 and action like 'keys.%'", person.id);
  return { ...person, keyId: key.key!.id, sealed: sealed.ciphertext };
}

/** AuditLogService as an auditor of the tenant. */
function auditor(tenantId: string) {
  const token = mesh.audit.issueToken({ id: "usr_auditor", kind: "user", tenantId, permissions: new Set(["audit.records.read", "audit.records.list", "audit.records.export", "audit.records.verify"]) });
  return clientFor(AuditLogService, mesh.audit.baseUrl, token);
}

/** The ids of the subject's entries in audit's trail (as actor or as the user acted on). */
async function auditEntryIds(tenantId: string, subjectId: string): Promise<string[]> {
  const rows = await adminQuery<{ entry_id: string }>(`select entry_id from "${mesh.audit.config.DATABASE_SCHEMA}".entries where tenant_id = $1 and (actor_id = $2 or (resource_type = 'user' and resource_id = $2)) order by leaf_index`, [tenantId, subjectId]);
  return rows.map((r) => r.entry_id);
}

/**
 * Each entry verified through AuditLogService: a freshly signed checkpoint
 * opened with the tenant's verifier key, and each entry's inclusion proof
 * against its root; returns the personal values each still decrypts to.
 */
async function verifiedEntries(tenantId: string, entryIds: readonly string[]): Promise<Record<string, string>[]> {
  const log = auditor(tenantId);
  const { verifierKey } = await log.getVerifierKey({});
  const cp = openCheckpoint((await log.getCheckpoint({ refresh: true })).checkpoint, parseVerifierKey(verifierKey));
  const out: Record<string, string>[] = [];
  for (const entryId of entryIds) {
    const { entry, personal } = await log.getEntry({ entryId, decrypt: true });
    const proof = await log.getInclusionProof({ leaf: { case: "entryId", value: entryId }, treeSize: BigInt(cp.size) });
    assert.ok(verifyInclusion(Number(proof.leafIndex), cp.size, leafHash(toBinary(AuditEntrySchema, entry!)), proof.hashes, cp.rootHash), `entry ${entryId} is in the signed tree`);
    out.push(personal);
  }
  return out;
}

async function exportBundle(tenantId: string, subjectId: string): Promise<string> {
  const officer = requestsAs(mesh, tenantId);
  const r = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId })).request!;
  await officer.verifySubjectIdentity({ id: r.id, method: "signed-in request" });
  await requestReaches(officer, r.id, RequestState.COMPLETED);
  const chunks: Uint8Array[] = [];
  for await (const m of officer.downloadExport({ id: r.id })) if (m.part.case === "chunk") chunks.push(m.part.value);
  return Buffer.concat(chunks).toString("utf8");
}

async function erase(tenantId: string, subjectId: string, details = "") {
  const r = (await requestsAs(mesh, tenantId, undefined, "usr_first").createDataSubjectRequest({ type: RequestType.ERASURE, subjectId, details })).request!;
  await requestsAs(mesh, tenantId, undefined, "usr_first").verifySubjectIdentity({ id: r.id, method: "ID seen" });
  await requestsAs(mesh, tenantId, undefined, "usr_second").approveErasure({ id: r.id });
  return requestReaches(requestsAs(mesh, tenantId), r.id, RequestState.COMPLETED);
}

describe("data-subject requests across the mesh", () => {
  test("an export holds the subject's data from every service and nothing of another subject or tenant", async () => {
    const tenant = await newTenant(mesh);
    const other = await newTenant(mesh);
    const subject = await personWithData(tenant);
    const colleague = await personWithData(tenant);
    const stranger = await personWithData(other);
    const text = await exportBundle(tenant, subject.id);
    const bundle = JSON.parse(text) as { manifest: { services: { name: string }[] }; services: Record<string, { data: Record<string, { id?: string; email?: string }[]>; schema: object }> };
    assert.deepEqual(bundle.manifest.services.map((s) => s.name).sort(), ["audit", "compliance", "identity", "keys", "tenancy"]);
    assert.equal(bundle.services["identity"]!.data["profile"]![0]!.email, subject.email);
    assert.ok(bundle.services["identity"]!.data["role_grants"]!.length >= 1);
    assert.equal(bundle.services["keys"]!.data["api_keys"]![0]!.id, subject.keyId);
    assert.equal(bundle.services["keys"]!.data["subject_key"]!.length, 1);
    const entries = (bundle.services["audit"]!.data as unknown as { audit_entries: { entry_id: string; actor_id: string; resource_id: string; personal: Record<string, string> }[] }).audit_entries;
    assert.deepEqual(entries.map((e) => e.entry_id).sort(), (await auditEntryIds(tenant, subject.id)).sort());
    assert.ok(entries.length >= 2 && entries.every((e) => e.actor_id === subject.id || e.resource_id === subject.id));
    assert.ok(entries.some((e) => Object.values(e.personal).includes(subject.email)), "personal values are decrypted in the export");
    for (const s of Object.values(bundle.services)) assert.equal((s.schema as { $schema?: string }).$schema, "https://json-schema.org/draft/2020-12/schema");
    for (const foreign of [colleague.email, colleague.id, colleague.keyId, stranger.email, stranger.id, stranger.keyId, other]) assert.ok(!text.includes(foreign), `the bundle mentions ${foreign}`);
  });

  test("after an erasure no text column of any schema holds the subject's email, and their key no longer opens anything", async () => {
    const tenant = await newTenant(mesh);
    const subject = await personWithData(tenant);
    const colleague = await personWithData(tenant);
    await exportBundle(tenant, subject.id);
    assert.notDeepEqual(await plaintextHits(schemasOf(mesh), subject.email), [], "the scan finds the email before the erasure");
    const auditIds = await auditEntryIds(tenant, subject.id);
    assert.ok((await verifiedEntries(tenant, auditIds)).some((p) => Object.values(p).includes(subject.email)), "the subject's audit entries decrypt before the erasure");
    const done = await erase(tenant, subject.id, `mail from ${subject.email}`);
    assert.ok(done.steps.every((s) => s.state === StepState.DONE));
    assert.deepEqual(await plaintextHits(schemasOf(mesh), subject.email), []);
    // Audit kept every entry: each still verifies against a signed checkpoint, none of its personal values opens.
    const after = await verifiedEntries(tenant, auditIds);
    assert.equal(after.length, auditIds.length);
    assert.deepEqual(after, auditIds.map(() => ({})));
    const colleagueIds = await auditEntryIds(tenant, colleague.id);
    assert.ok((await verifiedEntries(tenant, colleagueIds)).some((p) => Object.values(p).includes(colleague.email)), "a colleague's audit entries still decrypt");
    assert.notDeepEqual(await plaintextHits(schemasOf(mesh), colleague.email), [], "a colleague's data stays");
    const token = mesh.keys.issueToken({ id: colleague.id, kind: "user", tenantId: tenant, permissions: new Set(["keys.encryption.decrypt"]) });
    const refused = await clientFor(EncryptionService, `http://127.0.0.1:${mesh.keysPort}`, token)
      .decrypt({ ciphertext: subject.sealed, purpose: "audit.record" })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.FailedPrecondition);
    assert.match(refused?.rawMessage ?? "", /key destroyed/);
  });

  test("a participant stopped during a request makes it wait, showing why, and then finish", async () => {
    const tenant = await newTenant(mesh);
    const subject = await activeUser(mesh, tenant);
    const officer = requestsAs(mesh, tenant);
    await mesh.stopKeys();
    let id = "";
    try {
      id = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!.id;
      await officer.verifySubjectIdentity({ id, method: "signed-in request" });
      await eventually(async () => {
        const r = (await officer.getDataSubjectRequest({ id })).request!;
        const keys = r.steps.find((s) => s.service === "keys");
        return r.state === RequestState.IN_PROGRESS && keys?.state === StepState.RETRYING && keys.attempts >= 2 && keys.lastError.startsWith("Unavailable");
      }, 20_000, 100);
    } finally {
      await mesh.restartKeys();
    }
    const done = await requestReaches(officer, id, RequestState.COMPLETED, 30_000);
    assert.ok(done.steps.every((s) => s.state === StepState.DONE));
  });
});

describe("compliance in the audit trail", () => {
  /** The tenant's entries on `resourceId`, oldest first, once there are `n`. */
  async function trailOf(tenantId: string, resourceId: string, n: number): Promise<AuditEntry[]> {
    let found: AuditEntry[] = [];
    await eventually(async () => {
      found = (await auditor(tenantId).listEntries({ action: "compliance.", resourceId, pageSize: 100 })).entries.reverse();
      return found.length >= n;
    }, 20_000, 100);
    return found;
  }

  test("a request's transitions and a legal hold are in the tenant's trail with actor and resource, the subject's words sealed under them, and no other tenant sees them", async () => {
    const tenant = await newTenant(mesh);
    const other = await newTenant(mesh);
    const subject = await activeUser(mesh, tenant);
    const words = `please erase everything about ${subject.email}`;
    const [first, second, holder] = [`usr_first${nuid.next().toLowerCase()}`, `usr_second${nuid.next().toLowerCase()}`, `usr_holder${nuid.next().toLowerCase()}`];
    const r = (await requestsAs(mesh, tenant, undefined, first).createDataSubjectRequest({ type: RequestType.ERASURE, subjectId: subject.id, details: words })).request!;
    const [received] = await trailOf(tenant, r.id, 1);
    assert.deepEqual([received!.action, received!.resource?.type, received!.resource?.id, received!.tenantId], ["compliance.request.received", "request", r.id, tenant]);
    assert.deepEqual([received!.actor?.type, received!.actor?.id, received!.source], [ActorType.USER, first, "compliance"]);
    const details = received!.changedFields.find((f) => f.name === "request.details");
    assert.equal(details?.newValue?.kind.case === "sealed" ? details.newValue.kind.value.subjectId : undefined, subject.id, "the subject's words are sealed under the subject's key, not the officer's");
    assert.equal((await auditor(tenant).getEntry({ entryId: received!.entryId, decrypt: true })).personal["changed_fields.request.details.new"], words, "readable while the subject's key exists");

    await requestsAs(mesh, tenant, undefined, first).verifySubjectIdentity({ id: r.id, method: "ID seen" });
    await requestsAs(mesh, tenant, undefined, second).approveErasure({ id: r.id });
    await requestReaches(requestsAs(mesh, tenant), r.id, RequestState.COMPLETED, 30_000);
    const trail = await trailOf(tenant, r.id, 5);
    assert.deepEqual(trail.map((e) => e.action), ["received", "verified", "approved", "started", "completed"].map((v) => `compliance.request.${v}`));
    assert.deepEqual(trail.map((e) => e.actor?.id), [first, first, second, second, "svc_compliance"], "the saga completes as compliance, not as whoever woke it");
    assert.ok(trail.every((e) => e.tenantId === tenant && e.resource?.id === r.id && e.outcome === Outcome.SUCCESS));
    assert.deepEqual(trail[2]!.changedFields.find((f) => f.name === "request.approved_by")?.newValue?.kind, { case: "plain", value: second });
    const started = trail[3]!.changedFields.find((f) => f.name === "request.state");
    assert.deepEqual([started?.oldValue?.kind.value, started?.newValue?.kind.value], ["REQUEST_STATE_IDENTITY_VERIFIED", "REQUEST_STATE_IN_PROGRESS"], "the state's change is one field");
    // The erasure destroyed the subject's key: the request's entries stay, the subject's values no longer open;
    // the officer's own address and user agent, sealed under the officer's key, still do.
    const afterErasure = await auditor(tenant).getEntry({ entryId: received!.entryId, decrypt: true });
    assert.deepEqual(Object.keys(afterErasure.personal).sort(), ["source_ip", "user_agent"]);
    assert.deepEqual([afterErasure.entry?.sourceIp?.subjectId, afterErasure.entry?.userAgent?.subjectId], [first, first]);

    const until = timestampFromDate(new Date(Date.now() + 365 * day));
    const { id: holdId } = await requestsAs(mesh, tenant, undefined, holder).createLegalHold({ hold: { category: "billing_records", reason: "tax law, 7 years", untilTime: until } });
    const [hold] = await trailOf(tenant, holdId, 1);
    assert.deepEqual([hold!.action, hold!.resource?.type, hold!.actor?.id, hold!.tenantId], ["compliance.legal_hold.created", "legal_hold", holder, tenant]);
    assert.deepEqual(hold!.changedFields.find((f) => f.name === "hold.category")?.newValue?.kind, { case: "plain", value: "billing_records" });

    // No compliance entry holds the subject's email or words in plaintext, anywhere in audit's schema.
    const leaves = await adminQuery<{ leaf: Buffer }>(`select leaf from "${mesh.audit.config.DATABASE_SCHEMA}".entries where tenant_id = $1 and action like 'compliance.%'`, [tenant]);
    assert.ok(leaves.length >= 6);
    for (const { leaf } of leaves) for (const personal of [subject.email, words]) assert.ok(!leaf.toString("latin1").includes(personal), "an entry holds the subject's email");
    assert.deepEqual(await plaintextHits([mesh.audit.config.DATABASE_SCHEMA], subject.email), []);
    // Another tenant's auditor sees none of it.
    const foreign = auditor(other);
    assert.deepEqual((await foreign.listEntries({ action: "compliance.", pageSize: 100 })).entries.filter((e) => e.resource?.id === r.id || e.resource?.id === holdId), []);
    await assert.rejects(foreign.getEntry({ entryId: received!.entryId }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
  });
});

describe("several replicas", () => {
  test("two compliance replicas share the steps: every request finishes and no step runs twice", async () => {
    const { startTestService } = await import("../support/harness.js");
    const { complianceModuleOf, complianceParts } = await import("@bulwark/compliance");
    const c = mesh.compliance.config;
    const second = await startTestService(complianceModuleOf(complianceParts, { clock: mesh.clock.now }), {
      reuse: { schema: c.DATABASE_SCHEMA, prefix: mesh.compliance.prefix },
      keep: true,
      env: { TENANCY_URL: c.TENANCY_URL, KEYS_URL: c.KEYS_URL, IDENTITY_URL: c.IDENTITY_URL, AUDIT_URL: c.AUDIT_URL, COMPLIANCE_PARTICIPANTS: "tenancy,identity,keys,audit", COMPLIANCE_SAGA_POLL_MS: "50" },
    });
    try {
      const tenant = await newTenant(mesh);
      const officer = requestsAs(mesh, tenant);
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        const subject = await activeUser(mesh, tenant);
        const r = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!;
        await officer.verifySubjectIdentity({ id: r.id, method: "signed-in request" });
        ids.push(r.id);
      }
      for (const id of ids) {
        const done = await requestReaches(officer, id, RequestState.COMPLETED);
        assert.ok(done.steps.every((s) => s.attempts === 1), JSON.stringify(done.steps.map((s) => [s.service, s.attempts])));
      }
    } finally {
      await second.stop();
    }
  });
});

describe("tenant closure", () => {
  test("a closed tenant disappears from every service after its grace period; a reactivated one stays", async () => {
    const closed = await newTenant(mesh);
    const kept = await newTenant(mesh);
    const person = await personWithData(closed);
    const keeper = await personWithData(kept);
    // The closed tenant's trail has entries and a signed checkpoint before its closure.
    await auditor(closed).getCheckpoint({ refresh: true });
    const auditSchema = mesh.audit.config.DATABASE_SCHEMA;
    const before = (await adminQuery<{ entry_id: string }>(`select entry_id from "${auditSchema}".entries where tenant_id = $1`, [closed])).map((r) => r.entry_id);
    assert.ok(before.length > 0);
    const closedAt = new Date();
    await mesh.tenancyOps.closeTenant({ tenantId: closed, reason: "contract ended" });
    await mesh.tenancyOps.closeTenant({ tenantId: kept, reason: "changed their mind" });
    const ops = deletionsAsOperator(mesh);
    await eventually(async () => (await ops.getTenantDeletion({ tenantId: kept }).catch(() => undefined))?.deletion?.state === TenantDeletionState.SCHEDULED, 10_000, 100);
    await mesh.tenancyOps.reactivateTenant({ tenantId: kept });
    await eventually(async () => (await ops.getTenantDeletion({ tenantId: kept })).deletion?.state === TenantDeletionState.CANCELLED, 10_000, 100);
    const scheduled = (await ops.getTenantDeletion({ tenantId: closed })).deletion!;
    assert.equal(scheduled.state, TenantDeletionState.SCHEDULED);
    // Nothing happens within the grace period.
    mesh.clock.advance(29 * day);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await ops.getTenantDeletion({ tenantId: closed })).deletion?.state, TenantDeletionState.SCHEDULED);
    mesh.clock.advance(2 * day);
    try {
      await eventually(async () => (await ops.getTenantDeletion({ tenantId: closed })).deletion?.state === TenantDeletionState.COMPLETED, 30_000, 200);
    } finally {
      mesh.clock.advance(-31 * day);
    }
    const done = (await ops.getTenantDeletion({ tenantId: closed })).deletion!;
    assert.deepEqual(done.steps.map((s) => s.service), ["compliance", "tenancy", "identity", "audit", "keys"]);
    const [tenancy, identity, keys] = [mesh.tenancy, mesh.identity, mesh.keys].map((s) => s.config.DATABASE_SCHEMA);
    assert.equal((await adminQuery(`select 1 from "${tenancy}".tenants where id = $1`, [closed])).length, 0);
    assert.equal((await adminQuery(`select 1 from "${identity}".users where tenant_id = $1`, [closed])).length, 0);
    assert.equal((await adminQuery(`select 1 from "${keys}".api_keys where tenant_id = $1`, [closed])).length, 0);
    assert.equal((await adminQuery(`select 1 from "${keys}".key_versions where tenant_id = $1 and wrapped_key is not null`, [closed])).length, 0);
    assert.deepEqual(await plaintextHits(schemasOf(mesh), person.email), []);
    // Its audit trail is gone: every entry recorded before, their leaves, and the checkpoints signed over them
    // (events after audit's step, such as keys destroying the rings, may start a new trail).
    assert.equal((await adminQuery(`select 1 from "${auditSchema}".entries where tenant_id = $1 and entry_id = any($2)`, [closed, before])).length, 0);
    assert.equal((await adminQuery(`select 1 from "${auditSchema}".leaves where tenant_id = $1 and entry_id = any($2)`, [closed, before])).length, 0);
    assert.equal((await adminQuery(`select 1 from "${auditSchema}".checkpoints where tenant_id = $1 and signed_at <= $2`, [closed, closedAt])).length, 0);
    // The deleted tenant is unknown to tenancy and stays refused everywhere.
    await assert.rejects(mesh.tenancyOps.getTenant({ tenantId: closed }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    // Its slug is retired, not freed: slugs are unique forever.
    const closedSlug = (await adminQuery<{ slug: string }>(`select slug from "${tenancy}".retired_slugs where tenant_id = $1`, [closed]))[0]?.slug;
    assert.ok(closedSlug !== undefined);
    await assert.rejects(mesh.tenancyOps.createTenant({ slug: closedSlug, displayName: "Reuse", region: Region.EU }), (e: unknown) => ConnectError.from(e).code === Code.AlreadyExists);
    // The reactivated tenant keeps everything.
    assert.equal((await adminQuery(`select 1 from "${tenancy}".tenants where id = $1`, [kept])).length, 1);
    assert.equal((await adminQuery(`select 1 from "${identity}".users where id = $1`, [keeper.id])).length, 1);
    assert.ok((await adminQuery(`select 1 from "${auditSchema}".entries where tenant_id = $1`, [kept])).length > 0);
  });

  test("a closed tenant under a legal hold on its audit entries keeps its trail, still verifiable and readable, while everything else goes", async () => {
    const closed = await newTenant(mesh);
    const person = await personWithData(closed);
    const entryIds = await auditEntryIds(closed, person.id);
    assert.ok(entryIds.length > 0);
    const until = timestampFromDate(new Date(Date.now() + 400 * day));
    await requestsAs(mesh, closed).createLegalHold({ hold: { category: "audit_entries", reason: "litigation: evidence of access", untilTime: until } });
    const auditSchema = mesh.audit.config.DATABASE_SCHEMA;
    // What an auditor kept before the closure: the verifier key and a signed checkpoint over these entries.
    await verifiedEntries(closed, entryIds);
    const { verifierKey } = await auditor(closed).getVerifierKey({});
    const signed = (await auditor(closed).getCheckpoint({ refresh: true })).checkpoint;
    const before = (await adminQuery<{ entry_id: string }>(`select entry_id from "${auditSchema}".entries where tenant_id = $1`, [closed])).map((r) => r.entry_id);
    await mesh.tenancyOps.closeTenant({ tenantId: closed, reason: "contract ended" });
    const ops = deletionsAsOperator(mesh);
    await eventually(async () => (await ops.getTenantDeletion({ tenantId: closed }).catch(() => undefined))?.deletion?.state === TenantDeletionState.SCHEDULED, 10_000, 100);
    mesh.clock.advance(31 * day);
    try {
      await eventually(async () => (await ops.getTenantDeletion({ tenantId: closed })).deletion?.state === TenantDeletionState.COMPLETED, 30_000, 200);
    } finally {
      mesh.clock.advance(-31 * day);
    }
    const done = (await ops.getTenantDeletion({ tenantId: closed })).deletion!;
    const auditStep = done.steps.find((s) => s.service === "audit")!;
    assert.equal(auditStep.erasures.find((e) => e.category === "audit_entries")?.outcome, ErasureOutcome.RETAINED_LEGAL_HOLD);
    assert.match(auditStep.erasures.find((e) => e.category === "audit_entries")?.note ?? "", /litigation/);
    // The rest of the tenant is gone, the person's email with it.
    const [tenancy, identity] = [mesh.tenancy, mesh.identity].map((s) => s.config.DATABASE_SCHEMA);
    assert.equal((await adminQuery(`select 1 from "${tenancy}".tenants where id = $1`, [closed])).length, 0);
    assert.equal((await adminQuery(`select 1 from "${identity}".users where tenant_id = $1`, [closed])).length, 0);
    assert.deepEqual(await plaintextHits(schemasOf(mesh), person.email), []);
    // Every entry recorded before stays with its leaf, and the checkpoint signed over them is still there, its signature good.
    const after = new Set((await adminQuery<{ entry_id: string }>(`select entry_id from "${auditSchema}".entries where tenant_id = $1`, [closed])).map((r) => r.entry_id));
    assert.deepEqual(before.filter((id) => !after.has(id)), []);
    assert.equal((await adminQuery(`select 1 from "${auditSchema}".leaves where tenant_id = $1 and entry_id = any($2)`, [closed, before])).length, before.length);
    const cp = openCheckpoint(signed, parseVerifierKey(verifierKey));
    const [kept] = await adminQuery<{ note: string; root_hash: Buffer }>(`select note, root_hash from "${auditSchema}".checkpoints where tenant_id = $1 and size = $2`, [closed, cp.size]);
    assert.equal(kept?.note, signed);
    assert.deepEqual(new Uint8Array(kept!.root_hash), cp.rootHash);
    // Keys kept the person's ring (so the held trail stays readable) and destroyed the tenant's own.
    const keysSchema = mesh.keys.config.DATABASE_SCHEMA;
    const rings = await adminQuery<{ kind: string; state: string }>(`select kind, state from "${keysSchema}".key_rings where tenant_id = $1 and (kind = 'tenant' or subject_id = $2) order by kind`, [closed, person.id]);
    assert.deepEqual(rings.map((r) => `${r.kind} ${r.state}`), ["subject enabled", "tenant destroyed"]);
    // The hold itself outlives the tenant: it is why the trail is kept.
    const compliance = mesh.compliance.config.DATABASE_SCHEMA;
    assert.equal((await adminQuery(`select 1 from "${compliance}".legal_holds where tenant_id = $1 and category = 'audit_entries'`, [closed])).length, 1);
  });
});
