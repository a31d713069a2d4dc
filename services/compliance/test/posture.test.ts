/**
 * The posture controls and the auditor's report, called directly on facts
 * written out here: what passes, what fails with which items, that an
 * unreadable source never reads as a pass, and that the HTML page escapes
 * whatever a tenant wrote.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ControlSchema, ControlState, PostureReportSchema } from "@bulwark/contracts";
import { evaluateControls, quarterStart } from "../src/posture/controls.js";
import type { PostureFacts, UserFact } from "../src/posture/facts.js";
import { escapeHtml, renderHtml, renderJson } from "../src/posture/render.js";

const now = new Date("2026-12-01T12:00:00Z");
const daysAgo = (n: number): Date => new Date(now.getTime() - n * 86_400_000);
const user = (id: string, roleIds: string[], mfaEnrolled: boolean, last = daysAgo(1)): UserFact => ({ id, displayName: id, state: "active", roleIds, mfaEnrolled, createTime: daysAgo(500), lastSignInTime: last, lastActivityTime: last });

function facts(over: Partial<PostureFacts> = {}): PostureFacts {
  return {
    tenantId: "ten_test",
    now,
    users: [user("usr_owner", ["system:owner"], true), user("usr_admin", ["system:admin"], true), user("usr_a", ["system:member"], true)],
    roles: [
      { id: "system:owner", name: "Owner", requiresMfa: true },
      { id: "system:admin", name: "Admin", requiresMfa: true },
      { id: "system:member", name: "Member", requiresMfa: false },
    ],
    sessions: [{ id: "ses_1", userId: "usr_a", createTime: daysAgo(2), lastSeenTime: daysAgo(0) }],
    apiKeys: [{ id: "key_1", name: "ci", ownerUserId: "usr_a", createTime: daysAgo(10), expireTime: daysAgo(-80) }],
    keyRing: { keyId: "kr_1", destroyed: false, rotateTime: daysAgo(30), rotationPeriodS: 365 * 86_400 },
    auditRetentionS: 730 * 86_400,
    adminReviews: new Map([
      ["usr_owner", new Map([["system:owner", daysAgo(10)]])],
      ["usr_admin", new Map([["system:admin", daysAgo(10)]])],
    ]),
    unavailable: new Set(),
    ...over,
  };
}

const state = (f: PostureFacts, id: string) => evaluateControls(f).find((c) => c.id === id)!;

describe("posture controls", () => {
  test("a healthy tenant passes every control", () => {
    for (const c of evaluateControls(facts())) assert.equal(c.state, ControlState.PASS, `${c.id}: ${c.evidence}`);
  });

  test("an admin without MFA fails mfa_admins, naming them", () => {
    const f = facts({ users: [user("usr_owner", ["system:owner"], true), user("usr_admin", ["system:admin"], false)] });
    const c = state(f, "mfa_admins");
    assert.equal(c.state, ControlState.FAIL);
    assert.deepEqual(c.failingItems.map((i) => i.id), ["usr_admin"]);
    assert.equal(c.value, 0.5);
  });

  test("MFA adoption passes above its threshold although some users lack MFA", () => {
    const many = Array.from({ length: 20 }, (_, i) => user(`usr_${i}`, ["system:member"], i !== 0));
    const c = state(facts({ users: many }), "mfa_adoption");
    assert.equal(c.state, ControlState.PASS);
    assert.equal(c.failingCount, 1);
    assert.equal(c.value, 0.95);
  });

  test("keys older than 90 days, stale sessions, idle accounts, short audit retention and an old ring fail", () => {
    const f = facts({
      apiKeys: [{ id: "key_old", name: "x", ownerUserId: "u", createTime: daysAgo(91), expireTime: daysAgo(-1) }, { id: "key_forever", name: "y", ownerUserId: "u", createTime: daysAgo(1), expireTime: undefined }],
      sessions: [{ id: "ses_old", userId: "usr_a", createTime: daysAgo(31), lastSeenTime: daysAgo(0) }],
      users: [user("usr_owner", ["system:owner"], true), user("usr_idle", ["system:member"], true, daysAgo(120))],
      auditRetentionS: 90 * 86_400,
      keyRing: { keyId: "kr_1", destroyed: false, rotateTime: daysAgo(400), rotationPeriodS: 365 * 86_400 },
    });
    assert.deepEqual(state(f, "api_key_age").failingItems.map((i) => i.id), ["key_old", "key_forever"]);
    assert.deepEqual(state(f, "stale_sessions").failingItems.map((i) => i.id), ["ses_old"]);
    assert.deepEqual(state(f, "inactive_accounts").failingItems.map((i) => i.id), ["usr_idle"]);
    assert.equal(state(f, "audit_retention").state, ControlState.FAIL);
    assert.equal(state(f, "key_rotation").state, ControlState.FAIL);
  });

  test("a tenant without a key ring yet passes key rotation (nothing encrypted); one keys could not read does not", () => {
    const none = state(facts({ keyRing: null }), "key_rotation");
    assert.equal(none.state, ControlState.PASS);
    assert.match(none.evidence, /no key ring yet/);
    assert.equal(state(facts({ keyRing: undefined }), "key_rotation").state, ControlState.FAIL);
  });

  test("an admin grant reviewed last quarter does not count this quarter", () => {
    const f = facts({ adminReviews: new Map([["usr_owner", new Map([["system:owner", new Date(quarterStart(now).getTime() - 1000)]])]]) });
    const c = state(f, "admin_review");
    assert.equal(c.state, ControlState.FAIL);
    assert.deepEqual(c.failingItems.map((i) => i.id).sort(), ["usr_admin", "usr_owner"]);
  });

  test("a source that could not be read makes its controls ERROR, never PASS", () => {
    const cs = evaluateControls(facts({ unavailable: new Set(["keys"]) }));
    assert.equal(cs.find((c) => c.id === "api_key_age")!.state, ControlState.ERROR);
    assert.equal(cs.find((c) => c.id === "key_rotation")!.state, ControlState.ERROR);
    assert.equal(cs.find((c) => c.id === "mfa_admins")!.state, ControlState.PASS);
  });

  test("failing items are capped at 100 while failing_count has them all", () => {
    const many = Array.from({ length: 150 }, (_, i) => user(`usr_${i}`, ["system:admin"], false));
    const c = state(facts({ users: many }), "mfa_admins");
    assert.equal(c.failingItems.length, 100);
    assert.equal(c.failingCount, 150);
  });
});

describe("the auditor's report", () => {
  const hostile = `<script>alert("x")</script>&'\``;
  const report = create(PostureReportSchema, {
    tenantId: "ten_<b>",
    evaluateTime: timestampFromDate(now),
    controls: [create(ControlSchema, { id: "mfa_admins", title: hostile, description: hostile, state: ControlState.FAIL, soc2: ["CC6.1"], iso27001: ["A.8.5"], failingItems: [{ id: "usr_1", reason: hostile }], failingCount: 1, evidence: hostile, evaluateTime: timestampFromDate(now) })],
    passed: 0,
    failed: 1,
    auditCheckpoint: { available: true, treeSize: 42n, rootHash: "<root>", signedNote: hostile },
  });

  test("the HTML page escapes everything and carries tenant, time, state, evidence and checkpoint", () => {
    const html = renderHtml(report);
    assert.doesNotMatch(html, /<script/i);
    assert.ok(!html.includes(hostile));
    assert.ok(html.includes(escapeHtml(hostile)));
    assert.ok(html.includes("ten_&#60;b&#62;"));
    assert.ok(html.includes("2026-12-01T12:00:00.000Z"));
    assert.ok(html.includes(">FAIL<"));
    assert.ok(html.includes("&#60;root&#62;") && html.includes(">42<"));
    assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  });

  test("the JSON export is the proto3 JSON of the report", () => {
    const parsed = JSON.parse(renderJson(report)) as { tenantId: string; controls: { state: string }[]; auditCheckpoint: { treeSize: string } };
    assert.equal(parsed.tenantId, "ten_<b>");
    assert.equal(parsed.controls[0]!.state, "CONTROL_STATE_FAIL");
    assert.equal(parsed.auditCheckpoint.treeSize, "42");
  });

  test("escapeHtml leaves no markup-significant character", () => {
    assert.equal(escapeHtml(`<>&"'\``), "&#60;&#62;&#38;&#34;&#39;&#96;");
  });
});

describe("the audit checkpoint of a report", () => {
  test("a C2SP checkpoint note gives tree size and root hash; anything else is unavailable", async () => {
    const { noteCheckpoints, parseCheckpointNote } = await import("../src/posture/checkpoint.js");
    const note = "bulwark.example/audit/ten_1\n42\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n— bulwark.example/audit/ten_1 AAAA\n";
    const cp = parseCheckpointNote(note);
    assert.equal(cp?.available, true);
    assert.equal(cp?.treeSize, 42n);
    assert.equal(cp?.rootHash, "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=");
    assert.equal(parseCheckpointNote("not a note"), undefined);
    assert.equal((await noteCheckpoints(async () => note).checkpoint("ten_1")).treeSize, 42n);
    assert.equal((await noteCheckpoints(async () => Promise.reject(new Error("down"))).checkpoint("ten_1")).available, false);
  });
});
