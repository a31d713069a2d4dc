/**
 * Audit's monitoring rules end to end (tenancy, keys, identity with a real
 * SMTP listener, audit): repeated failed sign-ins of one user fire the
 * failed_sign_ins_user rule once; its alert (audit.alert.raised) is mailed by
 * identity's notifier to the tenant's administrators (not to other users),
 * and recorded in the tenant's own trail. Identity starts before audit's
 * stream exists, as in a mesh where audit is deployed later.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { AuditLogService, AuthService, MonitoringService, TenancyService } from "@bulwark/contracts";
import { auditModule } from "@bulwark/audit";
import { identityModule } from "@bulwark/identity";
import { keysModule } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { adminQuery, bootstrapToken, clientFor, dropTestService, eventually, startTestService, type Started } from "../support/harness.js";
import { createUser, tenantWithSlug, type TestTenant, type TestUser } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";
import { startMailbox, type Mailbox } from "../contract/support-mail.js";

let tenancy: Started;
let keys: Started;
let identity: Started;
let audit: Started;
let mailbox: Mailbox;
let tenant: TestTenant;
let admin: TestUser;
let victim: TestUser;

const identityMesh = (): IdentityMesh => ({ tenancy, identity, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: () => Promise.resolve() });

before(async () => {
  mailbox = await startMailbox();
  tenancy = await startTestService(tenancyModule);
  keys = await startTestService(keysModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl } });
  identity = await startTestService(identityModule, { prefix: tenancy.prefix, env: { TENANCY_URL: tenancy.baseUrl, KEYS_URL: keys.baseUrl, SMTP_URL: mailbox.url, PUBLIC_BASE_URL: "https://app.example.test" } });
  Object.assign(process.env, { AUDIT_LOG_NAME: "audit.test" });
  audit = await startTestService(auditModule, { prefix: tenancy.prefix, env: { AUDIT_LOG_NAME: "audit.test", TENANCY_URL: tenancy.baseUrl, KEYS_URL: keys.baseUrl }, keep: true });
  tenant = await tenantWithSlug(identityMesh());
  admin = await createUser(identityMesh(), tenant, { roles: ["system:admin"] });
  victim = await createUser(identityMesh(), tenant, { roles: ["system:member"] });
});
after(async () => {
  await audit?.running.stop();
  await identity?.stop();
  await keys?.stop();
  await tenancy?.stop();
  if (audit !== undefined) {
    await dropTestService(audit.config.DATABASE_SCHEMA, tenancy.prefix, "audit");
    await adminQuery(`drop role if exists "${audit.config.DATABASE_SCHEMA}_app_retention"`).catch(() => undefined);
  }
  await mailbox?.stop();
});

test("five failed sign-ins of a user raise one alert, mailed to the tenant's admins and recorded in the trail", async () => {
  const auth = clientFor(AuthService, identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.77.1.2" });
  for (let i = 0; i < 6; i++) {
    await auth.signIn({ tenantSlug: tenant.slug, email: victim.email, password: `Wrong-password-${i}-123456`, device: "curl" }).catch(() => undefined);
  }
  const subject = "Security alert: failed sign ins user";
  const [mail] = await mailbox.await(admin.email, subject);
  assert.match(mail!.text, /failed_sign_ins_user \(warning\)/);
  assert.match(mail!.text, new RegExp(`failed sign-ins for ${victim.id}`));
  assert.ok(!mail!.text.includes("10.77.1.2"), "no address in the mail");
  assert.equal(mailbox.to(victim.email, subject).length, 0, "only administrators are told");

  // The alert is itself recorded in the tenant's trail, once.
  const reader = clientFor(AuditLogService, audit.baseUrl, audit.issueToken({ id: admin.id, kind: "user", tenantId: tenant.id, permissions: new Set(["audit.records.list"]) }));
  let alerts: number = 0;
  await eventually(async () => {
    alerts = (await reader.listEntries({ action: "audit.alert.raised", pageSize: 50 })).entries.length;
    return alerts > 0;
  }, 15_000);
  // A sixth failure within the window does not raise a second alert.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await reader.listEntries({ action: "audit.alert.raised", pageSize: 50 })).entries.length, 1);
  assert.equal(mailbox.to(admin.email, subject).length, 1);
});

test("a threshold lowered through MonitoringService applies to the next events: two failed sign-ins now raise the alert", async () => {
  const second = await createUser(identityMesh(), tenant, { roles: ["system:member"] });
  const monitoring = clientFor(MonitoringService, audit.baseUrl, audit.issueToken({ id: admin.id, kind: "user", tenantId: tenant.id, permissions: new Set(["audit.monitoring.manage"]) }));
  const { settings } = await monitoring.updateMonitoringSettings({ rules: [{ rule: "failed_sign_ins_user", threshold: 2 }], updateMask: { paths: ["rules"] } });
  assert.equal(settings!.rules.find((r) => r.rule === "failed_sign_ins_user")!.threshold, 2);
  const auth = clientFor(AuthService, identity.baseUrl, undefined, "grpc", { "x-forwarded-for": "10.77.1.3" });
  for (let i = 0; i < 2; i++) await auth.signIn({ tenantSlug: tenant.slug, email: second.email, password: `Wrong-password-${i}-654321`, device: "curl" }).catch(() => undefined);
  const subject = "Security alert: failed sign ins user";
  await eventually(async () => mailbox.to(admin.email, subject).some((m) => m.text.includes(`2 failed sign-ins for ${second.id}`)), 15_000);
});
