import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ActorKind, EnvelopeSchema } from "@bulwark/contracts";
import { defaultAdminRoles, effectiveSettings, mayConcern, signalsOf } from "../src/monitoring/rules.js";

const env = (actor?: { id: string; kind: ActorKind }) => create(EnvelopeSchema, { id: "evt_1", tenantId: "ten_1", ...(actor ? { actor } : {}) });
const f = (o: Record<string, string>) => new Map(Object.entries(o));

test("each rule's signals come from the events it watches", () => {
  assert.deepEqual(signalsOf("identity.user.sign_in_failed", env(), f({ user_id: "usr_1", ip_address: "10.0.0.1" }), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["failed_sign_ins_user", "failed_sign_ins_address"]);
  assert.deepEqual(signalsOf("identity.user.signed_in", env(), f({ user_id: "usr_1", ip_address: "10.0.0.1" }), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["new_sign_in_address"]);
  assert.deepEqual(signalsOf("keys.secret.read", env({ id: "key_1", kind: ActorKind.API_KEY }), f({ ip_address: "10.0.0.2" }), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["api_key_new_address"]);
  const viaEnvelope = create(EnvelopeSchema, { id: "evt_2", tenantId: "ten_1", clientIp: "10.0.0.3", actor: { id: "key_2", kind: ActorKind.API_KEY } });
  assert.deepEqual(signalsOf("keys.secret.created", viaEnvelope, f({}), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["api_key_new_address"]);
  assert.deepEqual(signalsOf("compliance.subject.exported", env({ id: "usr_2", kind: ActorKind.USER }), f({}), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["mass_export"]);
  assert.deepEqual(signalsOf("identity.user.deleted", env({ id: "usr_2", kind: ActorKind.USER }), f({ user_id: "usr_3" }), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["mass_deletion"]);
  assert.deepEqual(signalsOf("identity.user.mfa_disabled", env(), f({ user_id: "usr_1" }), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["admin_mfa_disabled"]);
  assert.deepEqual(signalsOf("identity.role.assigned", env({ id: "usr_9", kind: ActorKind.USER }), f({ user_id: "usr_1", role_id: "system:admin" }), defaultAdminRoles).map((s) => ("rule" in s ? s.rule : s.kind)), ["admin_role", "role_escalation"]);
  assert.deepEqual(signalsOf("identity.role.assigned", env(), f({ user_id: "usr_1", role_id: "rol_viewer" }), defaultAdminRoles), []);
  assert.deepEqual(signalsOf("tenancy.tenant.policy_changed", env(), f({}), defaultAdminRoles), []);
});

test("events no rule can act on are told by action and actor alone, and those give no signal whatever their payload", () => {
  const operator = env({ id: "opr_1", kind: ActorKind.OPERATOR });
  const key = env({ id: "key_1", kind: ActorKind.API_KEY });
  // Everything a payload could hold that a rule reads.
  const full = f({ user_id: "usr_1", ip_address: "10.0.0.1", role_id: "system:admin" });
  for (const [action, envelope, expected] of [
    ["tenancy.tenant.policy_changed", operator, false],
    ["tenancy.tenant.policy_changed", env(), false],
    ["tenancy.tenant.policy_changed", key, true],
    ["tenancy.tenant.deleted", operator, true],
    ["tenancy.tenant.deleted", env(), false],
    ["compliance.subject.exported", operator, true],
    ["identity.user.sign_in_failed", env(), true],
    ["identity.role.revoked", env(), true],
  ] as const) {
    assert.equal(mayConcern(action, envelope), expected, `${action} by ${envelope.actor?.id ?? "nobody"}`);
    if (!expected) assert.deepEqual(signalsOf(action, envelope, full, [...defaultAdminRoles, "system:admin"]), [], action);
  }
});

test("per-tenant settings override the defaults; malformed settings count as none", () => {
  const s = effectiveSettings({ rules: { failed_sign_ins_user: { threshold: 3, windowSeconds: 60 }, mass_export: { enabled: false } }, adminRoles: ["rol_sec"] });
  assert.equal(s.rules.failed_sign_ins_user.threshold, 3);
  assert.equal(s.rules.failed_sign_ins_user.windowSeconds, 60);
  assert.equal(s.rules.mass_export.enabled, false);
  assert.equal(s.rules.mass_deletion.threshold, 20);
  assert.deepEqual(s.adminRoles, ["rol_sec"]);
  assert.equal(effectiveSettings({ rules: { failed_sign_ins_user: { threshold: -1 } } }).rules.failed_sign_ins_user.threshold, 5);
});
