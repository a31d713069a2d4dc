import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, MeshKeys, runAsPlatform } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { EventPublisher } from "@bulwark/events";
import { Scheduler } from "@bulwark/server";
import { housekeepingBatch, housekeepingJob, housekeepingJobs, runHousekeeping } from "../src/housekeeping/housekeeping.js";
import { scratchIdentityDb, type ScratchIdentityDb } from "./support/scratch-db.js";

let scratch: ScratchIdentityDb;
let db: Database;

before(async () => {
  scratch = await scratchIdentityDb("idhk");
  db = scratch.db;
});

after(() => scratch?.drop());

const sql = (text: string, params: unknown[] = []): Promise<unknown[]> => runAsPlatform("test fixtures", () => db.transaction((em) => em.execute<unknown[]>(text, params)));
const keys = async (table: string, key = "hash"): Promise<string[]> => ((await sql(`select ${key} as k from ${table} order by 1`)) as { k: string }[]).map((r) => r.k);

const past = "now() - interval '2 days'";
const future = "now() + interval '2 days'";

/** Two tenants' users with sessions, an operator with sessions, and for every table one expired row and one live row. */
async function fixtures(): Promise<void> {
  for (const [tenant, user] of [["ten_a", "usr_a"], ["ten_b", "usr_b"]] as const) {
    await sql(`insert into users (id, tenant_id, email, display_name, state, created_at, updated_at) values (?, ?, ?, 'U', 'ACTIVE', now(), now())`, [user, tenant, `${user}@example.com`]);
    await sql(`insert into sessions (id, tenant_id, user_id, created_at, last_seen_at, idle_timeout_s, expires_at, auth_time) values (?, ?, ?, ${past}, ${past}, 3600, ${future}, ${past})`, [`ses_${user}`, tenant, user]);
    // A used but unexpired refresh token stays: it is what detects a replay of it.
    await sql(`insert into refresh_tokens (hash, session_id, tenant_id, created_at, used_at, expires_at) values (?, ?, ?, ${past}, ${past}, ${past}), (?, ?, ?, ${past}, ${past}, ${future})`, [`rt_old_${user}`, `ses_${user}`, tenant, `rt_live_${user}`, `ses_${user}`, tenant]);
    await sql(`insert into mfa_challenges (hash, tenant_id, user_id, created_at, expires_at) values (?, ?, ?, ${past}, ${past}), (?, ?, ?, now(), ${future})`, [`mc_old_${user}`, tenant, user, `mc_live_${user}`, tenant, user]);
    await sql(`insert into webauthn_challenges (hash, tenant_id, user_id, kind, created_at, expires_at) values (?, ?, ?, 'sign_in', ${past}, ${past}), (?, ?, ?, 'registration', now(), ${future})`, [`wc_old_${user}`, tenant, user, `wc_live_${user}`, tenant, user]);
    await sql(`insert into password_reset_tokens (hash, tenant_id, user_id, created_at, expires_at) values (?, ?, ?, ${past}, ${past}), (?, ?, ?, now(), ${future})`, [`pr_old_${user}`, tenant, user, `pr_live_${user}`, tenant, user]);
    await sql(`insert into email_change_tokens (hash, tenant_id, user_id, new_email, created_at, expires_at) values (?, ?, ?, 'n@example.com', ${past}, ${past}), (?, ?, ?, 'n@example.com', now(), ${future})`, [`ec_old_${user}`, tenant, user, `ec_live_${user}`, tenant, user]);
  }
  await sql(`insert into operators (id, tenant_id, email, display_name, password_hash, state) values ('opr_1', null, 'op@example.com', 'Op', 'x', 'ACTIVE')`);
  await sql(
    `insert into operator_sessions (id, tenant_id, operator_id, created_at, expires_at) values
       ('os_expired', null, 'opr_1', ${past}, ${past}),
       ('os_expired_pinned', null, 'opr_1', ${past}, ${past}),
       ('os_live', null, 'opr_1', now(), ${future})`,
  );
  // An expired session still referenced by an unexpired refresh token waits for that token.
  await sql(
    `insert into operator_refresh_tokens (hash, tenant_id, session_id, created_at, expires_at) values
       ('ort_old', null, 'os_expired', ${past}, ${past}),
       ('ort_pinning', null, 'os_expired_pinned', ${past}, ${future}),
       ('ort_live', null, 'os_live', now(), ${future})`,
  );
  await sql(`insert into operator_mfa_challenges (hash, tenant_id, operator_id, created_at, expires_at) values ('omc_old', null, 'opr_1', ${past}, ${past}), ('omc_live', null, 'opr_1', now(), ${future})`);
  await sql(
    `insert into sign_in_throttles (key, tenant_id, failures, locked_until, updated_at) values
       ('acct:stale', null, 3, null, ${past}),
       ('acct:recent', null, 3, null, now()),
       ('acct:stale_but_locked', null, 9, ${future}, ${past})`,
  );
  // More expired challenges than one batch holds.
  await sql(`insert into mfa_challenges (hash, tenant_id, user_id, created_at, expires_at) select 'mc_bulk_' || g, 'ten_a', 'usr_a', ${past}, ${past} from generate_series(1, ?) g`, [housekeepingBatch + 250]);
}

test("a housekeeping run deletes every expired token, challenge, operator session and stale counter across tenants, and nothing live", async () => {
  await fixtures();
  const logger = createLogger("identity", "silent");
  const events = new EventPublisher({ service: "identity", subjectPrefix: "thk", keys: MeshKeys.development("identity") });
  const scheduler = new Scheduler({ service: "identity", db, events, logger, jobs: housekeepingJobs(db) });
  await scheduler.tick();

  assert.deepEqual(await keys("refresh_tokens"), ["rt_live_usr_a", "rt_live_usr_b"]);
  assert.deepEqual(await keys("mfa_challenges"), ["mc_live_usr_a", "mc_live_usr_b"]);
  assert.deepEqual(await keys("webauthn_challenges"), ["wc_live_usr_a", "wc_live_usr_b"]);
  assert.deepEqual(await keys("password_reset_tokens"), ["pr_live_usr_a", "pr_live_usr_b"]);
  assert.deepEqual(await keys("email_change_tokens"), ["ec_live_usr_a", "ec_live_usr_b"]);
  assert.deepEqual(await keys("operator_refresh_tokens"), ["ort_live", "ort_pinning"]);
  assert.deepEqual(await keys("operator_sessions", "id"), ["os_expired_pinned", "os_live"]);
  assert.deepEqual(await keys("operator_mfa_challenges"), ["omc_live"]);
  assert.deepEqual(await keys("sign_in_throttles", "key"), ["acct:recent", "acct:stale_but_locked"]);
  assert.deepEqual(await keys("sessions", "id"), ["ses_usr_a", "ses_usr_b"], "user sessions are not housekeeping's");
  assert.deepEqual(await keys("users", "id"), ["usr_a", "usr_b"]);

  const [run] = (await sql("select outcome, summary from scheduled_runs where job = ?", [housekeepingJob])) as { outcome: string; summary: Record<string, number> }[];
  assert.equal(run?.outcome, "succeeded");
  assert.equal(run?.summary["mfa_challenges"], housekeepingBatch + 250 + 2, "batches went on until the table was clean");
  assert.equal(run?.summary["sign_in_throttles"], 1);
  assert.equal(run?.summary["operator_sessions"], 1);

  // Idempotent: run again (another period) and nothing more goes.
  const again = await runAsPlatform("test", () => runHousekeeping(db, { signal: new AbortController().signal }));
  assert.ok(Object.values(again).every((n) => n === 0), JSON.stringify(again));
  await scheduler.stop();
});
