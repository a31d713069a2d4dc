/** Unit tests of compliance's pure pieces: due dates, the order of a tenant deletion, step mapping. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { StepState } from "@bulwark/contracts";
import { loadConfig } from "@bulwark/core";
import { deletionOrder } from "../src/deletions/store.js";
import { addMonths, stepToProto } from "../src/requests/store.js";

test("a month later is the same day of the next month, or its last day when shorter", () => {
  assert.equal(addMonths(new Date("2026-01-15T10:00:00Z"), 1).toISOString(), "2026-02-15T10:00:00.000Z");
  assert.equal(addMonths(new Date("2026-01-31T10:00:00Z"), 1).toISOString(), "2026-02-28T10:00:00.000Z");
  assert.equal(addMonths(new Date("2028-01-31T10:00:00Z"), 1).toISOString(), "2028-02-29T10:00:00.000Z");
  assert.equal(addMonths(new Date("2026-11-30T00:00:00Z"), 3).toISOString(), "2027-02-28T00:00:00.000Z");
});

test("a tenant deletion runs compliance first and keys last, whatever the configured order", () => {
  assert.deepEqual(deletionOrder(["keys", "tenancy", "identity"]), ["compliance", "tenancy", "identity", "keys"]);
  assert.deepEqual(deletionOrder(["tenancy", "identity", "audit", "keys"]), ["compliance", "tenancy", "identity", "audit", "keys"]);
  assert.deepEqual(deletionOrder(["identity"]), ["compliance", "identity"]);
  // The default COMPLIANCE_PARTICIPANTS names audit after keys: keys still runs last.
  assert.deepEqual(deletionOrder(loadConfig("compliance", {}).COMPLIANCE_PARTICIPANTS), ["compliance", "tenancy", "identity", "audit", "keys"]);
});

test("a retrying step shows when it is tried next; a done one when it finished", () => {
  const at = new Date("2026-12-01T12:00:00Z");
  const retrying = stepToProto({ service: "keys", state: "retrying", attempts: 3, last_error: "Unavailable: connection refused", next_attempt_at: at, done_at: null, result: {} });
  assert.equal(retrying.state, StepState.RETRYING);
  assert.equal(retrying.nextAttemptTime?.seconds, BigInt(at.getTime() / 1000));
  const done = stepToProto({ service: "identity", state: "done", attempts: 1, last_error: "", next_attempt_at: at, done_at: at, result: { erasures: [{ category: "profile", outcome: 1, recordCount: "1", note: "" }] } });
  assert.equal(done.nextAttemptTime, undefined);
  assert.equal(done.erasures[0]?.recordCount, 1n);
});
