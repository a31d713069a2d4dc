/**
 * Contract of bulwark.compliance.v1.PostureService against real tenancy,
 * keys, identity and compliance servers on Postgres and NATS: the controls
 * are evaluated from the other services' records (an admin without MFA is
 * flagged and clears when they enrol; old API keys, stale sessions and
 * unrotated key rings fail once compliance's clock moves on; admins pass
 * once an access review decided their grants), the report is stored and
 * exported as JSON and as escaped HTML, and every documented error.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import {
  AccessReviewDecision,
  AccessReviewScope,
  ApiKeyService,
  AuditLogService,
  ControlState,
  EncryptionService,
  Environment,
  MfaService,
  ReportFormat,
  type Control,
  type PostureReport,
} from "@bulwark/contracts";
import { postureJob } from "@bulwark/compliance";
import { effectivePermissions, runAsPlatform, runAsService } from "@bulwark/core";
import { openCheckpoint, parseVerifierKey } from "@bulwark/tlog";
import { adminQuery, bootstrapToken, clientFor, eventually } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { complianceAs, complianceEventTypes, compliancePrincipal, postureReader, reviewManager, startPostureMesh, type PostureMesh } from "./support-compliance-posture.js";
import { totpCode } from "./support-totp.js";

const control = (r: PostureReport | undefined, id: string): Control => {
  const c = r?.controls.find((x) => x.id === id);
  assert.ok(c !== undefined, `control ${id}`);
  return c;
};

describe("PostureService", () => {
  let mesh: PostureMesh;
  let tenant: TestTenant;

  before(async () => {
    mesh = await startPostureMesh();
    tenant = await tenantWithSlug(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  const reader = () => complianceAs(mesh, compliancePrincipal(tenant.id, postureReader)).posture;

  test("posture flags an admin without MFA and clears when they enrol", async () => {
    const admin = await createUser(mesh, tenant, { roles: ["system:admin"] });
    const member = await createUser(mesh, tenant, { roles: ["system:member"] });
    const first = (await reader().evaluatePosture({})).report;
    assert.equal(first?.tenantId, tenant.id);
    const mfa = control(first, "mfa_admins");
    assert.equal(mfa.state, ControlState.FAIL);
    assert.ok(mfa.failingItems.some((i) => i.id === admin.id));
    assert.ok(!mfa.failingItems.some((i) => i.id === member.id), "a member is no administrator");
    assert.ok(mfa.soc2.includes("CC6.1") && mfa.iso27001.includes("A.8.5"));
    assert.ok(mfa.evaluateTime !== undefined);
    assert.doesNotMatch(JSON.stringify(first, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)), /@example\.test/, "no email in the report");

    // The admin enrols TOTP (an admin's first sign-in gets enrolment-only tokens).
    const tokens = await signIn(mesh, admin);
    const client = clientFor(MfaService, mesh.identity.baseUrl, tokens.accessToken);
    const { secret } = await client.enrollTotp({});
    await client.confirmTotp({ code: totpCode(secret) });

    const second = (await reader().evaluatePosture({})).report;
    const cleared = control(second, "mfa_admins");
    assert.ok(!cleared.failingItems.some((i) => i.id === admin.id), "the enrolled admin is no longer flagged");
    // GetPostureReport answers the stored latest report.
    const latest = (await reader().getPostureReport({})).report;
    assert.deepEqual(latest?.evaluateTime, second?.evaluateTime);
    assert.ok((await complianceEventTypes(mesh, tenant.id)).includes("posture.evaluated"));
  });

  test("every control has a state, SOC 2 and ISO 27001 references; the checkpoint says unavailable without audit", async () => {
    const r = (await reader().evaluatePosture({})).report!;
    assert.deepEqual(
      r.controls.map((c) => c.id),
      ["mfa_admins", "mfa_adoption", "api_key_age", "inactive_accounts", "stale_sessions", "audit_retention", "key_rotation", "admin_review"],
    );
    for (const c of r.controls) {
      assert.ok(c.state === ControlState.PASS || c.state === ControlState.FAIL, `${c.id}: ${c.evidence}`);
      assert.ok(c.soc2.every((s) => /^CC[67]\.\d$/.test(s)) && c.soc2.length > 0, c.id);
      assert.ok(c.iso27001.every((s) => /^A\.[5-8]\.\d+$/.test(s)) && c.iso27001.length > 0, c.id);
      assert.notEqual(c.evidence, "");
    }
    assert.equal(r.passed + r.failed, r.controls.length);
    assert.equal(r.auditCheckpoint?.available, false);
    assert.equal(control(r, "audit_retention").state, ControlState.PASS, "the default policy keeps audit entries 2 years");
  });

  test("old API keys, stale sessions and an unrotated key ring fail once time moves on; admins pass after an access review", async () => {
    const dev = await createUser(mesh, tenant, { roles: ["system:developer"] });
    const devTokens = await signIn(mesh, dev);
    const perms = effectivePermissions(["system:developer"]);
    const key = await clientFor(ApiKeyService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: dev.id, kind: "user", tenantId: tenant.id, permissions: perms, authTime: Math.floor(Date.now() / 1000) })).createApiKey({ name: "ci", environment: Environment.LIVE, scopes: ["read"] });
    // The tenant encrypts something, so it has a key ring to rotate.
    await clientFor(EncryptionService, mesh.keys.baseUrl, mesh.keys.issueToken({ id: dev.id, kind: "user", tenantId: tenant.id, permissions: new Set(["keys.encryption.encrypt"]) })).encrypt({ plaintext: new TextEncoder().encode("x"), purpose: "notes" });
    assert.ok(devTokens.sessionId !== "");
    const now = (await reader().evaluatePosture({})).report!;
    assert.equal(control(now, "api_key_age").state, ControlState.PASS);
    assert.equal(control(now, "stale_sessions").state, ControlState.PASS);
    assert.equal(control(now, "key_rotation").state, ControlState.PASS);
    assert.equal(control(now, "admin_review").state, ControlState.FAIL, "nobody reviewed the admins yet");

    mesh.shift(400);
    try {
      const later = (await reader().evaluatePosture({})).report!;
      const keys = control(later, "api_key_age");
      assert.equal(keys.state, ControlState.FAIL);
      assert.ok(keys.failingItems.some((i) => i.id === key.key!.id && /days old/.test(i.reason)));
      assert.ok(control(later, "stale_sessions").failingItems.some((i) => i.id === devTokens.sessionId));
      assert.equal(control(later, "key_rotation").state, ControlState.FAIL);
      assert.equal(control(later, "inactive_accounts").state, ControlState.FAIL);
    } finally {
      mesh.shift(0);
    }

    // An admins-only campaign, decided by someone else and closed this quarter.
    const reviews = complianceAs(mesh, compliancePrincipal(tenant.id, reviewManager)).reviews;
    const { review } = await reviews.createAccessReview({ name: "Q admins", scope: AccessReviewScope.ADMINS });
    for (const item of review!.items) await reviews.decideAccessReviewItem({ reviewId: review!.id, itemId: item.id, decision: AccessReviewDecision.KEEP, comment: "still needed" });
    await reviews.closeAccessReview({ reviewId: review!.id });
    const reviewed = (await reader().evaluatePosture({})).report!;
    assert.equal(control(reviewed, "admin_review").state, ControlState.PASS, control(reviewed, "admin_review").evidence);
  });

  test("ExportPostureReport renders JSON and a printable HTML page with the tenant, the time, each control and the checkpoint", async () => {
    const json = await reader().exportPostureReport({ format: ReportFormat.JSON });
    assert.equal(json.contentType, "application/json");
    assert.match(json.fileName, /^posture-ten_.*\.json$/);
    const parsed = JSON.parse(new TextDecoder().decode(json.content)) as { tenantId: string; controls: { id: string; state: string; soc2: string[] }[] };
    assert.equal(parsed.tenantId, tenant.id);
    assert.ok(parsed.controls.some((c) => c.id === "mfa_admins" && c.state.startsWith("CONTROL_STATE_")));

    const html = await reader().exportPostureReport({ format: ReportFormat.HTML });
    assert.equal(html.contentType, "text/html; charset=utf-8");
    const page = new TextDecoder().decode(html.content);
    assert.match(page, /^<!doctype html>/);
    assert.ok(page.includes(tenant.id));
    assert.match(page, /Audit checkpoint<\/h2>\s*<p>unavailable/);
    for (const c of parsed.controls) assert.ok(page.includes(`<small>${c.id}</small>`), c.id);
    assert.doesNotMatch(page, /<script/i);
  });

  test("the hourly job evaluates every active tenant, listing them from tenancy in compliance's platform scope", async () => {
    const other = await tenantWithSlug(mesh);
    await createUser(mesh, other, { roles: ["system:owner"] });
    const job = postureJob(mesh.ctx);
    assert.equal(job.everyMs, 3_600_000);
    const at = new Date();
    const summary = await runAsService("compliance", undefined, () =>
      runAsPlatform(job.runAsPlatform!, () => job.run({ job: job.name, periodStart: at, attempt: 1, signal: new AbortController().signal, logger: mesh.compliance.running.deps.logger, now: () => at })),
    );
    assert.ok(summary !== undefined && summary["evaluated"]! >= 2 && summary["failed"] === 0, JSON.stringify(summary));
    const stored = (await complianceAs(mesh, compliancePrincipal(other.id, postureReader)).posture.getPostureReport({})).report;
    assert.equal(stored?.tenantId, other.id);
    assert.ok(Number(stored!.evaluateTime!.seconds) >= Math.floor(at.getTime() / 1000) - 1);
  });

  test("callers of one tenant who ask at once share evaluations: the one running and the one after it", async () => {
    const timeOf = (r: { report?: { evaluateTime?: { seconds: bigint; nanos: number } } }): string => `${r.report!.evaluateTime!.seconds}.${r.report!.evaluateTime!.nanos}`;
    const before = timeOf(await reader().evaluatePosture({}));
    const reports = await Promise.all(Array.from({ length: 6 }, () => reader().evaluatePosture({})));
    const times = new Set(reports.map(timeOf));
    assert.ok(times.size <= 2, `six concurrent calls were evaluated ${times.size} times`);
    assert.ok(!times.has(before), "no caller gets a report taken before they asked");
  });

  test("evaluating the posture of a tenant without a key ring creates none (the evidence read has no side effect)", async () => {
    const bare = await tenantWithSlug(mesh);
    const rings = async () => Number((await adminQuery<{ n: string }>(`select count(*) as n from "${mesh.keys.config.DATABASE_SCHEMA}".key_rings where tenant_id = $1`, [bare.id]))[0]?.n);
    assert.equal(await rings(), 0, "a new tenant has no ring yet");
    const r = (await complianceAs(mesh, compliancePrincipal(bare.id, postureReader)).posture.evaluatePosture({})).report!;
    const rotation = control(r, "key_rotation");
    assert.equal(rotation.state, ControlState.PASS);
    assert.match(rotation.evidence, /no key ring yet/);
    assert.equal(await rings(), 0, "posture read the ring without creating it");
  });

  test("documented errors: INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION", async () => {
    await refusedWith(reader().exportPostureReport({ format: ReportFormat.UNSPECIFIED }), Code.InvalidArgument, "format");
    await refusedWith(complianceAs(mesh, undefined).posture.getPostureReport({}), Code.Unauthenticated);
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, ["compliance.posture.read"])).posture.evaluatePosture({}), Code.PermissionDenied);
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, ["compliance.posture.evaluate"])).posture.exportPostureReport({ format: ReportFormat.JSON }), Code.PermissionDenied);
    await refusedWith(complianceAs(mesh, bootstrapToken).posture.getPostureReport({}), Code.FailedPrecondition, "tenant");
    // An operator names the tenant with the header.
    const op = await complianceAs(mesh, bootstrapToken, { "bulwark-tenant": tenant.id }).posture.getPostureReport({});
    assert.equal(op.report?.tenantId, tenant.id);
  });
  test("EvaluatePosture answers UNAVAILABLE while identity is down and GetPostureReport keeps the previous report (it stops identity)", async () => {
    const before = (await reader().evaluatePosture({})).report!;
    await mesh.identity.running.stop();
    await refusedWith(reader().evaluatePosture({}), Code.Unavailable, "identity");
    const kept = (await reader().getPostureReport({})).report!;
    assert.deepEqual(kept.evaluateTime, before.evaluateTime);
  });

  test("the hourly job fails while a tenant is left unevaluated or tenancy is down, so the scheduler retries it within minutes (runs after identity stopped; it stops tenancy)", async () => {
    const job = postureJob(mesh.ctx);
    assert.equal(job.retryFailedAfterMs, 60_000, "a failed run is retried after a minute, not an hour");
    const run = () => {
      const at = new Date();
      return runAsService("compliance", undefined, () =>
        runAsPlatform(job.runAsPlatform!, () => job.run({ job: job.name, periodStart: at, attempt: 1, signal: new AbortController().signal, logger: mesh.compliance.running.deps.logger, now: () => at })),
      );
    };
    await assert.rejects(run(), (err: Error) => err.name === "PostureRunError" && /posture not evaluated for [1-9]\d* of [1-9]\d* tenants/.test(err.message));
    await mesh.tenancy.running.stop();
    await assert.rejects(run(), (err: Error) => err.name === "ConnectError" && /unavailable|ECONNREFUSED/i.test(err.message), "no tenant list: the run fails instead of evaluating nobody");
  });
});

describe("PostureService with audit in the mesh", () => {
  let mesh: PostureMesh;
  let tenant: TestTenant;

  before(async () => {
    mesh = await startPostureMesh({ audit: true });
    tenant = await tenantWithSlug(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  const reader = () => complianceAs(mesh, compliancePrincipal(tenant.id, postureReader)).posture;

  test("a report carries audit's signed checkpoint (tree size, root, note), which verifies with audit's verifier key and shows in the exports", async () => {
    // Audit records the tenant's creation from tenancy's stream; until then it has no trail to sign.
    const rows = async () => adminQuery<{ n: string }>(`select count(*) as n from "${mesh.audit!.config.DATABASE_SCHEMA}".entries where tenant_id = $1`, [tenant.id]);
    await eventually(async () => Number((await rows())[0]?.n ?? 0) > 0, 15_000);
    const r = (await reader().evaluatePosture({})).report!;
    const cp = r.auditCheckpoint!;
    assert.equal(cp.available, true);
    assert.ok(cp.treeSize > 0n);
    const { verifierKey } = await clientFor(AuditLogService, mesh.audit!.baseUrl, mesh.audit!.issueToken(compliancePrincipal(tenant.id, ["audit.records.verify"]))).getVerifierKey({});
    const opened = openCheckpoint(cp.signedNote, parseVerifierKey(verifierKey), `audit.test/audit/${tenant.id}`);
    assert.equal(BigInt(opened.size), cp.treeSize);
    assert.equal(Buffer.from(opened.rootHash).toString("base64"), cp.rootHash);
    assert.throws(() => openCheckpoint(cp.signedNote.replace(`\n${cp.treeSize}\n`, `\n${cp.treeSize + 1n}\n`), parseVerifierKey(verifierKey)), "a changed tree size no longer verifies");

    const json = JSON.parse(new TextDecoder().decode((await reader().exportPostureReport({ format: ReportFormat.JSON })).content)) as { auditCheckpoint: { available: boolean; treeSize: string; rootHash: string; signedNote: string } };
    assert.deepEqual(json.auditCheckpoint, { available: true, treeSize: String(cp.treeSize), rootHash: cp.rootHash, signedNote: cp.signedNote });
    const page = new TextDecoder().decode((await reader().exportPostureReport({ format: ReportFormat.HTML })).content);
    assert.ok(page.includes(`<dt>Tree size</dt><dd>${cp.treeSize}</dd>`));
    assert.ok(page.includes(cp.rootHash.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`)));
    assert.doesNotMatch(page, /Audit checkpoint<\/h2>\s*<p>unavailable/);
  });

  test("with audit down the report still comes out, its checkpoint unavailable (runs last: it stops audit)", async () => {
    await mesh.stopAudit();
    const r = (await reader().evaluatePosture({})).report!;
    assert.equal(r.tenantId, tenant.id);
    assert.equal(r.controls.length, 8);
    assert.equal(r.auditCheckpoint?.available, false);
    assert.equal(r.auditCheckpoint?.signedNote, "");
    const page = new TextDecoder().decode((await reader().exportPostureReport({ format: ReportFormat.HTML })).content);
    assert.match(page, /Audit checkpoint<\/h2>\s*<p>unavailable/);
  });
});
