/**
 * Compliance's retention rules enforced across the mesh (tenancy, keys,
 * identity, audit and compliance, real Postgres and NATS): identity and
 * audit keep a copy of the rules and legal holds from compliance's events;
 * identity's housekeeping deletes a tenant's ended sessions past its
 * sessions rule, audit's retention job removes entries past a customized
 * audit-entries rule, compliance gives export bundles the exports rule's
 * life; a legal hold keeps what it covers. Row timestamps are moved back as
 * the superuser, and compliance's clock forward, instead of waiting.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { durationFromMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RequestState, RequestType, RetentionCategory, RetentionService } from "@bulwark/contracts";
import { complianceContext, expireExports } from "@bulwark/compliance";
import { housekeepingJobs } from "@bulwark/identity";
import { runAsPlatform } from "@bulwark/core";
import { nuid } from "@nats-io/nuid";
import pg from "pg";
import { adminQuery, adminUrl, clientFor, eventually, testDatabase } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { activeUser, auditEntriesReach, newTenant, requestReaches, requestsAs, startComplianceMesh, type ComplianceMesh } from "./support-compliance.js";

const day = 86_400_000;
const days = (n: number) => durationFromMs(n * day);

describe("retention rules enforced by identity, audit and compliance", () => {
  let mesh: ComplianceMesh;

  before(async () => {
    // Audit's retention job runs every second here (a daily cron otherwise).
    process.env["AUDIT_RETENTION_EVERY_MS"] = "1000";
    mesh = await startComplianceMesh();
  });
  after(async () => {
    delete process.env["AUDIT_RETENTION_EVERY_MS"];
    await mesh?.stop();
  });

  const rules = (tenantId: string) =>
    clientFor(RetentionService, mesh.compliance.baseUrl, mesh.compliance.issueToken({ id: `usr_${nuid.next().toLowerCase()}`, kind: "user", tenantId, permissions: new Set(["compliance.retention.read", "compliance.retention.manage"]) }));
  const identitySchema = () => `"${mesh.identity.config.DATABASE_SCHEMA}"`;
  const auditSchema = () => `"${mesh.audit.config.DATABASE_SCHEMA}"`;

  /** Waits until `service`'s copy holds the tenant's rule of `category` with `periodS`. */
  async function copied(schema: string, tenantId: string, category: string, periodS: number): Promise<void> {
    await eventually(async () => (await adminQuery(`select 1 from ${schema}.retention_rules where tenant_id = $1 and category = $2 and period_s = $3`, [tenantId, category, periodS])).length === 1, 15_000, 100);
  }
  async function holdCopied(schema: string, tenantId: string, present: boolean): Promise<void> {
    await eventually(async () => (await adminQuery(`select 1 from ${schema}.legal_holds where tenant_id = $1`, [tenantId])).length === (present ? 1 : 0), 15_000, 100);
  }

  /** A session row of the user, last used `idleDays` ago, ended (expired) or live. */
  async function session(tenantId: string, userId: string, idleDays: number, ended: boolean): Promise<string> {
    const id = `ses_${nuid.next().toLowerCase()}`;
    const seen = new Date(Date.now() - idleDays * day);
    const expires = ended ? new Date(Date.now() - 60_000) : new Date(Date.now() + day);
    await adminQuery(
      `insert into ${identitySchema()}.sessions (id, tenant_id, user_id, created_at, last_seen_at, idle_timeout_s, expires_at, auth_time) values ($1, $2, $3, $4, $5, $6, $7, $4)`,
      [id, tenantId, userId, new Date(seen.getTime() - 3_600_000), seen, ended ? 1800 : 400 * 86_400, expires],
    );
    await adminQuery(`insert into ${identitySchema()}.refresh_tokens (hash, session_id, tenant_id, created_at, expires_at) values ($1, $2, $3, $4, $5)`, [`h_${id}`, id, tenantId, seen, expires]);
    return id;
  }
  const sessionsLeft = async (ids: string[]) => (await adminQuery<{ id: string }>(`select id from ${identitySchema()}.sessions where id = any($1) order by id`, [ids])).map((r) => r.id);

  /** Runs identity's housekeeping job as the scheduler would (platform scope). */
  async function housekeeping(): Promise<Record<string, number>> {
    const [job] = housekeepingJobs(mesh.identity.running.deps.db);
    const now = new Date();
    const summary = await runAsPlatform(job!.runAsPlatform!, () => job!.run({ job: job!.name, periodStart: now, attempt: 1, signal: new AbortController().signal, logger: mesh.identity.running.deps.logger, now: () => now }));
    return summary ?? {};
  }

  test("identity deletes ended sessions unused for longer than the tenant's sessions rule; young, live and held ones stay", async () => {
    const t = await newTenant(mesh);
    const other = await newTenant(mesh);
    const user = await activeUser(mesh, t);
    const otherUser = await activeUser(mesh, other);
    await rules(t).setRetentionRule({ category: RetentionCategory.SESSIONS, period: days(2), enabled: true });
    await copied(identitySchema(), t, "sessions", 2 * 86_400);

    const old = await session(t, user.id, 3, true);
    const young = await session(t, user.id, 1, true);
    const live = await session(t, user.id, 3, false);
    const otherOld = await session(other, otherUser.id, 3, true); // the default rule: 90 days
    // Two replicas at once: the old session goes once, with its refresh token.
    const [a, b] = await Promise.all([housekeeping(), housekeeping()]);
    assert.equal((a["sessions"] ?? 0) + (b["sessions"] ?? 0), 1, JSON.stringify([a, b]));
    assert.deepEqual(await sessionsLeft([old, young, live, otherOld]), [young, live, otherOld].sort());
    assert.equal((await adminQuery(`select 1 from ${identitySchema()}.refresh_tokens where session_id = $1`, [old])).length, 0);
    assert.equal((await housekeeping())["sessions"], 0, "a second run finds nothing");

    // A legal hold on sessions keeps them; once it is lifted they go.
    const officer = requestsAs(mesh, t);
    const { id: holdId } = await officer.createLegalHold({ hold: { category: "sessions", reason: "litigation", untilTime: timestampFromDate(new Date(Date.now() + 30 * day)) } });
    await holdCopied(identitySchema(), t, true);
    const held = await session(t, user.id, 3, true);
    await housekeeping();
    assert.deepEqual(await sessionsLeft([held]), [held]);
    await officer.deleteLegalHold({ id: holdId });
    await holdCopied(identitySchema(), t, false);
    await housekeeping();
    assert.deepEqual(await sessionsLeft([held]), []);

    // A disabled rule keeps ended sessions.
    await rules(t).setRetentionRule({ category: RetentionCategory.SESSIONS, period: days(1), enabled: false });
    await copied(identitySchema(), t, "sessions", 86_400);
    const kept = await session(t, user.id, 3, true);
    await housekeeping();
    assert.deepEqual(await sessionsLeft([kept]), [kept]);
  });

  test("the exports rule shortens the life of new and waiting export bundles below COMPLIANCE_EXPORT_TTL_HOURS", async () => {
    const t = await newTenant(mesh);
    const subject = await activeUser(mesh, t);
    const officer = requestsAs(mesh, t);
    const exportOf = async () => {
      const created = (await officer.createDataSubjectRequest({ type: RequestType.EXPORT, subjectId: subject.id })).request!;
      await officer.verifySubjectIdentity({ id: created.id, method: "video call" });
      return requestReaches(officer, created.id, RequestState.COMPLETED);
    };
    const life = (r: { completeTime?: { seconds: bigint }; exportExpireTime?: { seconds: bigint } }) => Number(r.exportExpireTime!.seconds - r.completeTime!.seconds) * 1000;

    // The default rule (7 days) equals the platform's bound (168 hours).
    const waiting = await exportOf();
    assert.ok(Math.abs(life(waiting) - 7 * day) < 5_000, String(life(waiting)));
    // A 1-day rule shortens the bundle already waiting, and gives new ones 1 day.
    await rules(t).setRetentionRule({ category: RetentionCategory.EXPORTS, period: days(1), enabled: true });
    const shortened = (await officer.getDataSubjectRequest({ id: waiting.id })).request!;
    assert.ok(Math.abs(life(shortened) - day) < 5_000, String(life(shortened)));
    const fresh = await exportOf();
    assert.ok(Math.abs(life(fresh) - day) < 5_000, String(life(fresh)));
    // A day and a half later both are gone.
    mesh.clock.advance(1.5 * day);
    try {
      assert.ok((await expireExports(complianceContext(mesh.compliance.running.deps))) >= 2);
      for (const r of [waiting, fresh]) {
        const got = (await officer.getDataSubjectRequest({ id: r.id })).request!;
        assert.ok(timestampDate(got.exportExpireTime!) <= mesh.clock.now());
        const download = async () => {
          for await (const part of officer.downloadExport({ id: r.id })) void part;
        };
        await refusedWith(download(), Code.FailedPrecondition);
      }
    } finally {
      mesh.clock.advance(-1.5 * day);
    }
    // A longer rule than the platform's bound does not lengthen anything: the bound wins.
    await rules(t).setRetentionRule({ category: RetentionCategory.EXPORTS, period: days(30), enabled: true });
    const bounded = await exportOf();
    assert.ok(Math.abs(life(bounded) - 7 * day) < 5_000, String(life(bounded)));
  });

  /** Moves the tenant's audit entries (and leaves) back by `daysAgo` days, as the superuser past the append-only triggers. */
  async function backdate(tenantId: string, daysAgo: number): Promise<void> {
    const at = new Date(Date.now() - daysAgo * day);
    const url = new URL(adminUrl);
    url.pathname = `/${testDatabase}`;
    const c = new pg.Client({ connectionString: url.toString() });
    await c.connect();
    try {
      await c.query(`select ${auditSchema()}.audit_ensure_partition($1)`, [at]);
      await c.query("set session_replication_role = replica");
      await c.query(`update ${auditSchema()}.entries set recorded_at = $2 where tenant_id = $1`, [tenantId, at]);
      await c.query(`update ${auditSchema()}.leaves set recorded_at = $2 where tenant_id = $1`, [tenantId, at]);
    } finally {
      await c.end();
    }
  }
  const entriesOf = async (tenantId: string) => Number((await adminQuery<{ n: string }>(`select count(*)::text as n from ${auditSchema()}.entries where tenant_id = $1 and action <> 'audit.retention.applied'`, [tenantId]))[0]!.n);

  test("audit's retention applies a customized audit-entries rule over tenancy's policy, and a legal hold keeps the entries", async () => {
    // Both tenants keep tenancy's default (2 years) and set a 100-day rule in compliance; the second holds its entries.
    const held = await newTenant(mesh);
    const ruled = await newTenant(mesh);
    for (const t of [held, ruled]) {
      await rules(t).setRetentionRule({ category: RetentionCategory.AUDIT_ENTRIES, period: days(100), enabled: true });
      await copied(auditSchema(), t, "audit_entries", 100 * 86_400);
    }
    await requestsAs(mesh, held).createLegalHold({ hold: { category: "audit_entries", reason: "regulator's inquiry", untilTime: timestampFromDate(new Date(Date.now() + 30 * day)) } });
    await holdCopied(auditSchema(), held, true);
    // The trail records compliance's stream too: its rule and hold entries are in before anything is counted or backdated.
    await auditEntriesReach(mesh, held, "action = $2", "compliance.legal_hold.created");
    await auditEntriesReach(mesh, ruled, "action = $2", "compliance.retention_rule.changed");
    await eventually(async () => (await entriesOf(held)) > 0 && (await entriesOf(ruled)) > 0, 15_000, 100);
    const heldCount = await entriesOf(held);

    // 120 days old: past the compliance rule, well within tenancy's 2 years. The held tenant first, so any run that sees the other's old entries sees both.
    await backdate(held, 120);
    await backdate(ruled, 120);
    await eventually(async () => (await entriesOf(ruled)) === 0, 20_000, 200);
    assert.equal(await entriesOf(held), heldCount, "the held tenant's entries stay");
  });
});
