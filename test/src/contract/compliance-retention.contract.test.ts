/**
 * Contract of bulwark.compliance.v1.RetentionService against real tenancy,
 * keys, identity and compliance servers, and the inactive-account rule it
 * configures: an account idle for 11 months is warned (identity records the
 * event its mailer sends the warning from), deleted through identity after
 * the 30 days' grace unless the user signs in, and nothing happens twice
 * when the rule runs again or on two replicas at once. Compliance's clock is
 * moved instead of waiting.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { InactiveAccountState, RetentionCategory } from "@bulwark/contracts";
import { runInactiveAccountRule, inactiveAccountsJob } from "@bulwark/compliance";
import { runAsPlatform } from "@bulwark/core";
import { refusedWith } from "./support-assert.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { complianceAs, complianceEventTypes, compliancePrincipal, retentionManager, startPostureMesh, type PostureMesh } from "./support-compliance-posture.js";
import { eventTypesFor, identityQuery, operatorIn } from "./support-identity.js";

const days = (n: number) => durationFromMs(n * 86_400_000);
const year = 365 * 86_400;

describe("RetentionService and the inactive-account rule", () => {
  let mesh: PostureMesh;
  let tenant: TestTenant;

  before(async () => {
    mesh = await startPostureMesh();
    tenant = await tenantWithSlug(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  const manager = () => complianceAs(mesh, compliancePrincipal(tenant.id, retentionManager)).retention;
  const logger = () => mesh.compliance.running.deps.logger;
  const runAt = (t: TestTenant, dayOffset: number) => runInactiveAccountRule(mesh.ctx, t.id, year, new Date(Date.now() + dayOffset * 86_400_000), logger());

  test("ListRetentionRules gives every category with defaults; SetRetentionRule changes one", async () => {
    const t = await tenantWithSlug(mesh);
    const r = complianceAs(mesh, compliancePrincipal(t.id, retentionManager)).retention;
    const { rules } = await r.listRetentionRules({});
    assert.deepEqual(rules.map((x) => x.category), [RetentionCategory.AUDIT_ENTRIES, RetentionCategory.SESSIONS, RetentionCategory.INACTIVE_ACCOUNTS, RetentionCategory.EXPORTS]);
    assert.ok(rules.every((x) => !x.customized));
    assert.equal(rules.find((x) => x.category === RetentionCategory.INACTIVE_ACCOUNTS)?.enabled, false, "deleting accounts is opt-in");
    const { rule } = await r.setRetentionRule({ category: RetentionCategory.INACTIVE_ACCOUNTS, period: days(365), enabled: true });
    assert.equal(rule?.customized, true);
    assert.equal(rule?.enabled, true);
    assert.equal(Number(rule?.period?.seconds), year);
    assert.ok(rule?.updatedBy.startsWith("usr_"));
    assert.ok((await complianceEventTypes(mesh, t.id)).includes("retention_rule.changed"));
  });

  test("the inactive-account rule warns at 11 months, then deletes after 30 days' grace; a sign-in cancels it", async () => {
    await manager().setRetentionRule({ category: RetentionCategory.INACTIVE_ACCOUNTS, period: days(365), enabled: true });
    const idle = await createUser(mesh, tenant, { roles: ["system:member"] });
    const returning = await createUser(mesh, tenant, { roles: ["system:member"] });
    await createUser(mesh, tenant, { roles: ["system:owner"] });

    // 10 months: nobody is warned yet.
    assert.equal((await runAt(tenant, 300)).warned, 0);
    // 11 months and a bit: both members (and the owner) are warned, once, even when two replicas run at the same time.
    const [a, b] = await Promise.all([runAt(tenant, 340), runAt(tenant, 340)]);
    assert.equal(a.warned + b.warned, 3);
    assert.equal((await runAt(tenant, 341)).warned, 0, "a warned account is not warned again");
    const { accounts } = await manager().listInactiveAccounts({});
    const warned = accounts.find((x) => x.userId === idle.id);
    assert.equal(warned?.state, InactiveAccountState.WARNED);
    assert.ok(Number(warned!.deleteTime!.seconds) * 1000 >= Date.now() + 364 * 86_400_000, "deleted a year after the last activity at the earliest");
    // identity mails the warning from its event.
    assert.deepEqual((await eventTypesFor(mesh, tenant.id, idle.id)).filter((e) => e === "user.inactivity_warned"), ["user.inactivity_warned"]);

    // The returning user signs in during the grace period (identity's clock is real: the sign-in is dated to day 345 of the test's timeline).
    await signIn(mesh, returning);
    await identityQuery(mesh, "update $schema.users set last_sign_in_at = now() + interval '345 days', last_activity_at = now() + interval '345 days' where id = $1", [returning.id]);

    // Before the grace ends nothing is deleted; the sign-in already keeps the returning user.
    const mid = await runAt(tenant, 360);
    assert.deepEqual({ deleted: mid.deleted, kept: mid.kept }, { deleted: 0, kept: 1 });
    const after = await runAt(tenant, 372);
    assert.equal(after.deleted, 1, "the idle member is deleted (the owner is refused as the last owner)");
    await refusedWith(operatorIn(mesh, tenant.id).users.getUser({ userId: idle.id }), Code.NotFound);
    const { user } = await operatorIn(mesh, tenant.id).users.getUser({ userId: returning.id });
    assert.equal(user?.id, returning.id, "the user who signed in is kept");
    const all = (await manager().listInactiveAccounts({ includeSettled: true })).accounts;
    assert.equal(all.find((x) => x.userId === idle.id)?.state, InactiveAccountState.DELETED);
    assert.equal(all.find((x) => x.userId === returning.id)?.state, InactiveAccountState.KEPT);
    const types = await complianceEventTypes(mesh, tenant.id);
    for (const v of ["inactive_account.warned", "inactive_account.kept", "inactive_account.deleted"]) assert.ok(types.includes(v), v);
    // Running again changes nothing.
    const again = await runAt(tenant, 373);
    assert.deepEqual({ ...again, warned: 0 }, { warned: 0, kept: 0, deleted: 0 });
  });

  test("the scheduled job runs the rule in every tenant that enabled it", async () => {
    const t = await tenantWithSlug(mesh);
    await complianceAs(mesh, compliancePrincipal(t.id, retentionManager)).retention.setRetentionRule({ category: RetentionCategory.INACTIVE_ACCOUNTS, period: days(365), enabled: true });
    const u = await createUser(mesh, t, { roles: ["system:member"] });
    const job = inactiveAccountsJob(mesh.ctx);
    const controller = new AbortController();
    const at = new Date(Date.now() + 340 * 86_400_000);
    const summary = await runAsPlatform(job.runAsPlatform!, () => job.run({ job: job.name, periodStart: at, attempt: 1, signal: controller.signal, logger: logger(), now: () => at }));
    assert.ok(summary !== undefined && summary["failed"] === 0 && summary["warned"]! >= 1, JSON.stringify(summary));
    const { accounts } = await complianceAs(mesh, compliancePrincipal(t.id, retentionManager)).retention.listInactiveAccounts({});
    assert.deepEqual(accounts.map((x) => x.userId), [u.id]);
  });

  test("documented errors: INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION", async () => {
    await refusedWith(manager().setRetentionRule({ category: RetentionCategory.UNSPECIFIED, period: days(30), enabled: true }), Code.InvalidArgument, "category");
    await refusedWith(manager().setRetentionRule({ category: RetentionCategory.EXPORTS, period: days(60), enabled: true }), Code.InvalidArgument, "period");
    await refusedWith(manager().setRetentionRule({ category: RetentionCategory.SESSIONS, enabled: true }), Code.InvalidArgument, "period");
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, ["compliance.retention.read"])).retention.setRetentionRule({ category: RetentionCategory.SESSIONS, period: days(30), enabled: true }), Code.PermissionDenied);
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, [])).retention.listRetentionRules({}), Code.PermissionDenied);
    await refusedWith(complianceAs(mesh, undefined).retention.listInactiveAccounts({}), Code.Unauthenticated);
    const { bootstrapToken } = await import("../support/harness.js");
    await refusedWith(complianceAs(mesh, bootstrapToken).retention.listRetentionRules({}), Code.FailedPrecondition, "tenant");
  });
});
