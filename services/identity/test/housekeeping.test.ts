/**
 * Identity's housekeeping against a real Postgres schema: one run deletes
 * every expired row it is responsible for and nothing live, and a run is
 * skipped while another replica holds the run's advisory lock.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { newId, runAsPlatform } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import pg from "pg";
import { Housekeeping } from "../src/housekeeping.js";
import { scratchIdentityDb, type ScratchIdentityDb } from "./support/scratch-db.js";

let scratch: ScratchIdentityDb;
let db: Database;
const tenant = "ten_housekeeping";

before(async () => {
  scratch = await scratchIdentityDb("idhk");
  db = scratch.db;
});

after(() => scratch?.drop());

/** Runs SQL in the platform scope (the rows span tenants and platform tables). */
function sql<R>(text: string, params: unknown[] = []): Promise<R[]> {
  return runAsPlatform("test", () => db.transaction((em) => em.execute<R[]>(text, params)));
}

const past = "now() - interval '1 second'";
const future = "now() + interval '10 minutes'";

/** One expired and one live row of every kind housekeeping looks after; returns the live keys. */
async function seed(): Promise<Record<string, string[]>> {
  const user = newId("usr");
  await sql("insert into users (id, tenant_id, email, display_name, state, password_hash, mfa_enrolled, created_at, updated_at) values (?, ?, ?, 'Hk', 'ACTIVE', null, false, now(), now())", [user, tenant, `${user}@example.test`]);
  const operator = newId("opr");
  await sql("insert into operators (id, tenant_id, email, display_name, password_hash, state) values (?, null, ?, 'Op', 'x', 'ACTIVE')", [operator, `${operator}@example.test`]);
  const live: Record<string, string[]> = {};
  for (const [label, when] of [
    ["old", past],
    ["new", future],
  ] as const) {
    const id = `${label}-${user}`;
    const session = newId("ses");
    await sql(`insert into sessions (id, tenant_id, user_id, created_at, last_seen_at, idle_timeout_s, expires_at) values (?, ?, ?, now(), now(), 1800, ${future})`, [session, tenant, user]);
    await sql(`insert into refresh_tokens (hash, session_id, tenant_id, created_at, expires_at) values (?, ?, ?, now(), ${when})`, [id, session, tenant]);
    await sql(`insert into mfa_challenges (hash, tenant_id, user_id, created_at, expires_at) values (?, ?, ?, now(), ${when})`, [id, tenant, user]);
    await sql(`insert into webauthn_challenges (hash, tenant_id, user_id, kind, created_at, expires_at) values (?, ?, null, 'sign_in', now(), ${when})`, [id, tenant]);
    await sql(`insert into password_reset_tokens (hash, tenant_id, user_id, created_at, expires_at) values (?, ?, ?, now(), ${when})`, [id, tenant, user]);
    await sql(`insert into email_change_tokens (hash, tenant_id, user_id, new_email, created_at, expires_at) values (?, ?, ?, 'n@example.test', now(), ${when})`, [id, tenant, user]);
    await sql(`insert into operator_sessions (id, tenant_id, operator_id, created_at, expires_at) values (?, null, ?, now(), ${when})`, [id, operator]);
    if (label === "new") for (const t of ["refresh_tokens", "mfa_challenges", "webauthn_challenges", "password_reset_tokens", "email_change_tokens", "operator_sessions"]) live[t] = [id];
  }
  // Counters: stale (two days untouched), recent, stale but still locked, stale with a check in flight.
  await sql("insert into sign_in_throttles (key, tenant_id, failures, updated_at) values (?, null, 3, now() - interval '2 days')", [`acct:stale:${user}`]);
  await sql("insert into sign_in_throttles (key, tenant_id, failures, updated_at) values (?, null, 3, now() - interval '1 hour')", [`acct:recent:${user}`]);
  await sql("insert into sign_in_throttles (key, tenant_id, failures, locked_until, updated_at) values (?, null, 9, now() + interval '1 hour', now() - interval '2 days')", [`acct:locked:${user}`]);
  await sql("insert into sign_in_throttles (key, tenant_id, failures, pending, pending_until, updated_at) values (?, null, 0, 1, now() + interval '30 seconds', now() - interval '2 days')", [`acct:pending:${user}`]);
  live["sign_in_throttles"] = [`acct:locked:${user}`, `acct:pending:${user}`, `acct:recent:${user}`];
  return live;
}

async function keysOf(table: string, like: string): Promise<string[]> {
  const column = table === "operator_sessions" ? "id" : table === "sign_in_throttles" ? "key" : "hash";
  const rows = await sql<{ k: string }>(`select ${column} as k from ${table} where ${column} like ? order by 1`, [`%${like}%`]);
  return rows.map((r) => r.k);
}

test("a run deletes every expired token, challenge, operator session and stale counter, and nothing live", async () => {
  const live = await seed();
  const user = live["mfa_challenges"]![0]!.slice("new-".length);
  const counts = await new Housekeeping(db).runOnce();
  assert.ok(counts !== undefined);
  for (const n of [counts.refreshTokens, counts.mfaChallenges, counts.webauthnChallenges, counts.passwordResetTokens, counts.emailChangeTokens, counts.operatorSessions]) assert.ok(n >= 1);
  assert.ok(counts.signInCounters >= 1);
  for (const [table, keys] of Object.entries(live)) assert.deepEqual(await keysOf(table, user), keys, table);
  // The live session rows are not housekeeping's to delete.
  assert.equal((await sql<{ n: number }>("select count(*)::int as n from sessions where user_id = ?", [user]))[0]?.n, 2);
});

test("a run is skipped, deleting nothing, while another replica holds the housekeeping lock", async () => {
  const live = await seed();
  const user = live["mfa_challenges"]![0]!.slice("new-".length);
  const url = new URL(process.env["BULWARK_TEST_ADMIN_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres");
  url.pathname = `/${process.env["BULWARK_TEST_DATABASE"] ?? "bulwark_test"}`;
  const other = new pg.Client({ connectionString: url.toString() });
  await other.connect();
  try {
    await other.query(`select pg_advisory_lock(hashtext('bulwark.identity.housekeeping:' || $1))`, [db.schema]);
    assert.equal(await new Housekeeping(db).runOnce(), undefined);
    assert.deepEqual(await keysOf("mfa_challenges", user), [`new-${user}`, `old-${user}`].sort());
  } finally {
    await other.end();
  }
  assert.ok((await new Housekeeping(db).runOnce()) !== undefined, "once the other replica is gone, the run happens");
  assert.deepEqual(await keysOf("mfa_challenges", user), [`new-${user}`]);
});

test("started, it runs on its own every interval until stopped", async () => {
  const live = await seed();
  const user = live["mfa_challenges"]![0]!.slice("new-".length);
  const hk = new Housekeeping(db);
  hk.start(100);
  try {
    const deadline = Date.now() + 10_000;
    while ((await keysOf("mfa_challenges", user)).length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  } finally {
    await hk.stop();
  }
  assert.deepEqual(await keysOf("mfa_challenges", user), [`new-${user}`]);
});
