/**
 * The contract of bulwark.audit.v1.MonitoringService: a tenant's monitoring
 * rules read and changed through the generated client against a real audit
 * server (real Postgres and NATS, tenancy and keys beside it), its success
 * cases and each documented error. A change lands in the table the Monitor
 * reads on every event, and in the tenant's trail as an event.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, type Client } from "@connectrpc/connect";
import { MonitoringService } from "@bulwark/contracts";
import { effectiveSettings } from "@bulwark/audit";
import { nuid } from "@nats-io/nuid";
import { bootstrapToken, clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { auditQuery, newTenant, startAuditMesh, waitForEntries, type AuditMesh } from "./support-audit.js";

let mesh: AuditMesh;
let tenantA: string;
let tenantB: string;

before(async () => {
  mesh = await startAuditMesh();
  tenantA = await newTenant(mesh);
  tenantB = await newTenant(mesh);
});
after(async () => {
  await mesh?.stop();
});

const both = ["audit.monitoring.read", "audit.monitoring.manage"];

function monitoringUser(tenantId: string, permissions: Iterable<string> = both): Client<typeof MonitoringService> {
  return clientFor(MonitoringService, mesh.audit.baseUrl, mesh.audit.issueToken({ id: `usr_${nuid.next().toLowerCase()}`, kind: "user", tenantId, permissions: new Set(permissions) }));
}

const operator = (): Client<typeof MonitoringService> => clientFor(MonitoringService, mesh.audit.baseUrl, bootstrapToken);

describe("MonitoringService.GetMonitoringSettings", () => {
  test("a tenant that changed nothing has every rule at its default and the default admin roles", async () => {
    const { settings } = await monitoringUser(tenantB, ["audit.monitoring.read"]).getMonitoringSettings({});
    assert.ok(settings !== undefined);
    assert.deepEqual(settings.rules.map((r) => r.rule), ["failed_sign_ins_user", "failed_sign_ins_address", "new_sign_in_address", "api_key_new_address", "mass_export", "mass_deletion", "admin_mfa_disabled", "role_escalation"]);
    const user = settings.rules.find((r) => r.rule === "failed_sign_ins_user")!;
    assert.deepEqual([user.enabled, user.threshold, user.windowSeconds, user.severity, user.windowed, user.customized], [true, 5, 600, "warning", true, false]);
    const escalation = settings.rules.find((r) => r.rule === "role_escalation")!;
    assert.deepEqual([escalation.windowed, escalation.windowSeconds, escalation.threshold], [false, 0, 1]);
    assert.ok(settings.rules.every((r) => r.enabled && !r.customized));
    assert.deepEqual(settings.adminRoles, ["system:owner", "system:admin"]);
    assert.equal(settings.updateTime, undefined);
  });

  test("documented errors: INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, PERMISSION_DENIED", async () => {
    await refusedWith(monitoringUser(tenantA).getMonitoringSettings({ tenantId: "not a tenant" }), Code.InvalidArgument, "tenant_id");
    await refusedWith(monitoringUser(tenantA).getMonitoringSettings({ tenantId: "x".repeat(65) }), Code.InvalidArgument, "tenant_id");
    await refusedWith(operator().getMonitoringSettings({}), Code.InvalidArgument, "tenant_id");
    await refusedWith(operator().getMonitoringSettings({ tenantId: "platform" }), Code.InvalidArgument, "tenant_id");
    await refusedWith(monitoringUser(tenantA).getMonitoringSettings({ tenantId: tenantB }), Code.NotFound);
    await refusedWith(clientFor(MonitoringService, mesh.audit.baseUrl).getMonitoringSettings({}), Code.Unauthenticated);
    await refusedWith(monitoringUser(tenantA, ["audit.records.read"]).getMonitoringSettings({}), Code.PermissionDenied, "audit.monitoring.read");
  });
});

describe("MonitoringService.UpdateMonitoringSettings", () => {
  test("changes the named rules and the admin roles, keeps the others, and the Monitor's table and the trail see it", async () => {
    const client = monitoringUser(tenantA);
    const { settings } = await client.updateMonitoringSettings({
      rules: [
        { rule: "failed_sign_ins_user", threshold: 3, windowSeconds: 300 },
        { rule: "mass_export", enabled: false },
      ],
      adminRoles: ["system:owner", "rol_0securityteam"],
      updateMask: { paths: ["rules", "admin_roles"] },
    });
    assert.ok(settings !== undefined);
    const byName = new Map(settings.rules.map((r) => [r.rule, r]));
    assert.deepEqual([byName.get("failed_sign_ins_user")!.threshold, byName.get("failed_sign_ins_user")!.windowSeconds, byName.get("failed_sign_ins_user")!.enabled, byName.get("failed_sign_ins_user")!.customized], [3, 300, true, true]);
    assert.deepEqual([byName.get("mass_export")!.enabled, byName.get("mass_export")!.threshold, byName.get("mass_export")!.customized], [false, 5, true]);
    assert.equal(byName.get("mass_deletion")!.customized, false);
    assert.deepEqual(settings.adminRoles, ["system:owner", "rol_0securityteam"]);
    assert.ok(settings.updateTime !== undefined);

    // What Get answers is what Update answered.
    const read = await monitoringUser(tenantA, ["audit.monitoring.read"]).getMonitoringSettings({});
    assert.deepEqual(read.settings, settings);

    // The Monitor reads this row on every event, through the same function.
    const [row] = await auditQuery<{ rules: unknown }>(mesh, "select rules from $schema.monitor_settings where tenant_id = $1", [tenantA]);
    const effective = effectiveSettings(row?.rules);
    assert.deepEqual(effective.rules.failed_sign_ins_user, { enabled: true, threshold: 3, windowSeconds: 300, severity: "warning" });
    assert.equal(effective.rules.mass_export.enabled, false);
    assert.deepEqual(effective.adminRoles, ["system:owner", "rol_0securityteam"]);

    // The change is in the tenant's trail.
    await waitForEntries(mesh, tenantA, 1, "audit.monitoring_settings.updated");

    // Another tenant is untouched.
    const other = await monitoringUser(tenantB).getMonitoringSettings({});
    assert.ok(other.settings!.rules.every((r) => !r.customized));
  });

  test("a rule put back to its default, and an empty admin-role list, restore the defaults; a repeated change changes nothing", async () => {
    const tenant = await newTenant(mesh);
    const client = monitoringUser(tenant);
    await client.updateMonitoringSettings({ rules: [{ rule: "mass_deletion", threshold: 50 }], adminRoles: ["system:admin"], updateMask: { paths: ["rules", "admin_roles"] } });
    // Only "rules" in the mask: admin_roles in the request is ignored.
    const partial = await client.updateMonitoringSettings({ rules: [{ rule: "new_sign_in_address", enabled: false }], adminRoles: ["system:owner"], updateMask: { paths: ["rules"] } });
    assert.deepEqual(partial.settings!.adminRoles, ["system:admin"]);
    assert.equal(partial.settings!.rules.find((r) => r.rule === "mass_deletion")!.threshold, 50);
    const first = partial.settings!.updateTime;
    const again = await client.updateMonitoringSettings({ rules: [{ rule: "new_sign_in_address", enabled: false }], updateMask: { paths: ["rules"] } });
    assert.deepEqual(again.settings!.updateTime, first, "nothing changed, nothing written");
    const reset = await client.updateMonitoringSettings({ rules: [{ rule: "mass_deletion", reset: true }, { rule: "new_sign_in_address", reset: true }], adminRoles: [], updateMask: { paths: ["rules", "admin_roles"] } });
    assert.ok(reset.settings!.rules.every((r) => !r.customized));
    assert.deepEqual(reset.settings!.adminRoles, ["system:owner", "system:admin"]);
  });

  test("an operator changes a tenant it names", async () => {
    const { settings } = await operator().updateMonitoringSettings({ tenantId: tenantB, rules: [{ rule: "role_escalation", enabled: false }], updateMask: { paths: ["rules"] } });
    assert.equal(settings!.rules.find((r) => r.rule === "role_escalation")!.enabled, false);
    const read = await monitoringUser(tenantB).getMonitoringSettings({});
    assert.equal(read.settings!.rules.find((r) => r.rule === "role_escalation")!.enabled, false);
  });

  test("documented errors: INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, PERMISSION_DENIED", async () => {
    const client = monitoringUser(tenantA);
    const rules = { paths: ["rules"] };
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "no_such_rule", enabled: false }], updateMask: rules }), Code.InvalidArgument, "rules[0].rule");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "mass_export", enabled: false }, { rule: "mass_export", threshold: 9 }], updateMask: rules }), Code.InvalidArgument, "rules[1].rule");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "admin_mfa_disabled", threshold: 2 }], updateMask: rules }), Code.InvalidArgument, "rules[0].threshold");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "role_escalation", windowSeconds: 60 }], updateMask: rules }), Code.InvalidArgument, "rules[0].window_seconds");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "mass_export", threshold: 0 }], updateMask: rules }), Code.InvalidArgument, "rules[0].threshold");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "mass_export", windowSeconds: 5 }], updateMask: rules }), Code.InvalidArgument, "rules[0].window_seconds");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "mass_export", windowSeconds: 604_801 }], updateMask: rules }), Code.InvalidArgument, "rules[0].window_seconds");
    await refusedWith(client.updateMonitoringSettings({ adminRoles: ["owner; drop table"], updateMask: { paths: ["admin_roles"] } }), Code.InvalidArgument, "admin_roles[0]");
    await refusedWith(client.updateMonitoringSettings({ adminRoles: ["system:owner", "system:owner"], updateMask: { paths: ["admin_roles"] } }), Code.InvalidArgument, "admin_roles[1]");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "mass_export", enabled: false }] }), Code.InvalidArgument, "update_mask");
    await refusedWith(client.updateMonitoringSettings({ rules: [{ rule: "mass_export", enabled: false }], updateMask: { paths: ["severity"] } }), Code.InvalidArgument, "update_mask");
    await refusedWith(operator().updateMonitoringSettings({ rules: [{ rule: "mass_export", enabled: false }], updateMask: rules }), Code.InvalidArgument, "tenant_id");
    await refusedWith(client.updateMonitoringSettings({ tenantId: tenantB, rules: [{ rule: "mass_export", enabled: false }], updateMask: rules }), Code.NotFound);
    await refusedWith(clientFor(MonitoringService, mesh.audit.baseUrl).updateMonitoringSettings({ updateMask: rules }), Code.Unauthenticated);
    await refusedWith(monitoringUser(tenantA, ["audit.monitoring.read"]).updateMonitoringSettings({ rules: [{ rule: "mass_export", enabled: false }], updateMask: rules }), Code.PermissionDenied, "audit.monitoring.manage");
    // Nothing refused was written: tenant B (named by A) still has role_escalation as the operator left it, and mass_export on.
    const b = await monitoringUser(tenantB).getMonitoringSettings({});
    assert.equal(b.settings!.rules.find((r) => r.rule === "mass_export")!.enabled, true);
  });
});
