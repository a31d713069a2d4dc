import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { FieldCorrectionSchema, LegalHoldSchema, RectificationOutcome, RetentionCategory, type DataSubjectParticipant, type FieldCorrection, type LegalHold } from "@bulwark/contracts";
import { describeError, newRequestId, runAsPlatform, runAsService, runInTenant, runWithContext, type Logger } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { ComplianceContext } from "../context.js";
import { exportLifetimeMs } from "../requests/expiry.js";
import { retentionRule } from "../retention/rules.js";
import { erasuresToJson, publishChange, requestColumns, type RequestRow, type StepRow } from "../requests/store.js";
import { deletionOrder, publishDeletion, type DeletionRow } from "../deletions/store.js";
import { participantOf, type Participant } from "./participants.js";
import { open, purposes, seal } from "./sealed.js";

/** Errors a participant will answer again whatever the retry: the step fails for good. */
const permanent: ReadonlySet<Code> = new Set([Code.InvalidArgument, Code.PermissionDenied, Code.NotFound, Code.FailedPrecondition, Code.Unimplemented, Code.OutOfRange]);
/** Codes whose text may name the mesh's addresses or internals: a request shows the code and a plain sentence instead. */
const opaque: ReadonlySet<Code> = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Internal, Code.Canceled, Code.DataLoss]);

/** What a request or deletion shows of a participant's error. */
function shown(service: string, ce: ConnectError): string {
  return (opaque.has(ce.code) ? `${Code[ce.code]}: ${service} did not answer` : `${Code[ce.code]}: ${ce.rawMessage}`).slice(0, 500);
}

/** How long a claimed step is reserved for the replica that claimed it (a crashed replica's step is due again after). */
const leaseMs = 120_000;
/** Steps claimed per round. */
const batch = 16;

/** A claimed step of a data-subject request. */
interface ClaimedStep {
  request_id: string;
  service: string;
  tenant_id: string;
  attempts: number;
  type: string;
  subject_id: string;
}

/** A claimed step of a tenant deletion. */
interface ClaimedDeletionStep {
  deletion_id: string;
  service: string;
  tenant_id: string;
  attempts: number;
}

/** What the worker needs. */
export interface SagaWorkerOptions {
  readonly ctx: ComplianceContext;
  /** Compliance's own participant (its requests and bundles, its parts' data). */
  readonly local: ServiceImpl<typeof DataSubjectParticipant>;
}

/**
 * Runs data-subject requests and tenant deletions as sagas: each service's
 * step is a row in Postgres (dsr_steps, tenant_deletion_steps) that a
 * replica claims with `FOR UPDATE SKIP LOCKED` and a lease, calls the
 * service's DataSubjectParticipant, and records done, retrying (with
 * exponential back-off, COMPLIANCE_RETRY_BASE_MS doubling up to
 * COMPLIANCE_RETRY_MAX_MS, and the error shown on the step) or failed (an
 * error that repeats whatever the retry; the request then fails, with the
 * reason). A replica that dies mid-call leaves its claim to expire, and
 * another takes the step over. When every step of a request is done the
 * request completes (an export's bundle is assembled and sealed first).
 * An erasure runs identity's step first and the others once it is done:
 * identity may refuse (the tenant's last owner, FAILED_PRECONDITION), and
 * a refused erasure must fail before any service erased anything, not
 * half-done. Tenant deletions run their steps in order, keys last.
 *
 * The loop runs every COMPLIANCE_SAGA_POLL_MS, and at once when nudged (a
 * request just started). Several replicas run it side by side.
 */
export class SagaWorker {
  readonly #ctx: ComplianceContext;
  readonly #local: ServiceImpl<typeof DataSubjectParticipant>;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = true;

  constructor(o: SagaWorkerOptions) {
    this.#ctx = o.ctx;
    this.#local = o.local;
    this.#logger = o.ctx.deps.logger.child({ part: "saga" });
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(this.#ctx.deps.config.COMPLIANCE_SAGA_POLL_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** Runs a round now (or right after the one in progress). */
  nudge(): void {
    if (this.#stopped) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      // A timer keeps the context it was set in, and a nudge comes from inside a call: the saga acts as
      // compliance itself, never as the caller whose call woke it (nor from their address).
      this.#running = runWithContext({ requestId: newRequestId() }, () => runAsService("compliance", undefined, () => this.runOnce()))
        .catch((err: unknown) => this.#logger.warn({ err: describeError(err) }, "saga round failed; retrying next round"))
        .finally(() => {
          this.#running = undefined;
          if (this.#stopped) return;
          const again = this.#again;
          this.#again = false;
          this.#schedule(again ? 0 : this.#ctx.deps.config.COMPLIANCE_SAGA_POLL_MS);
        });
    }, ms);
    this.#timer.unref();
  }

  #participant(service: string): Participant {
    return participantOf(this.#ctx, service, this.#local);
  }

  #platform<T>(reason: string, fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return runAsPlatform(reason, () => this.#ctx.deps.db.transaction(fn));
  }

  #tenant<T>(tenantId: string, fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return runInTenant(tenantId, () => this.#ctx.deps.db.transaction(fn));
  }

  #backoff(attempts: number): number {
    const c = this.#ctx.deps.config;
    return Math.min(c.COMPLIANCE_RETRY_MAX_MS, c.COMPLIANCE_RETRY_BASE_MS * 2 ** Math.max(0, Math.min(attempts - 1, 30)));
  }

  /** One round: start due deletions, run due steps, finish what is complete. */
  async runOnce(): Promise<void> {
    await this.#startDueDeletions();
    const [steps, deletionSteps] = await Promise.all([this.#claimSteps(), this.#claimDeletionSteps()]);
    await Promise.all([...steps.map((s) => this.#runStep(s)), ...deletionSteps.map((s) => this.#runDeletionStep(s))]);
    await this.#finishRequests();
    await this.#finishDeletions();
    if (steps.length === batch || deletionSteps.length === batch) this.#again = true;
    this.#ctx.deps.relay.nudge();
  }

  async #claimSteps(): Promise<ClaimedStep[]> {
    const now = this.#ctx.clock();
    return this.#platform("compliance saga: claiming due steps", (em) =>
      em.execute<ClaimedStep[]>(
        `with due as (
           select s.request_id, s.service from dsr_steps s join dsr_requests r on r.id = s.request_id
           where s.state in ('pending', 'retrying') and s.next_attempt_at <= ? and r.state = 'in_progress'
             and not (r.type = 'erasure' and s.service <> 'identity'
                      and exists (select 1 from dsr_steps i where i.request_id = s.request_id and i.service = 'identity' and i.state <> 'done'))
           order by s.next_attempt_at limit ? for update of s skip locked)
         update dsr_steps s set attempts = s.attempts + 1, next_attempt_at = ?
         from due, dsr_requests r where s.request_id = due.request_id and s.service = due.service and r.id = s.request_id
         returning s.request_id, s.service, s.tenant_id, s.attempts, r.type, r.subject_id`,
        [now, batch, new Date(now.getTime() + leaseMs)],
      ),
    );
  }

  async #holds(tenantId: string): Promise<LegalHold[]> {
    const rows = await this.#tenant(tenantId, (em) => em.execute<{ category: string; reason: string; until_at: Date }[]>("select category, reason, until_at from legal_holds where until_at > ?", [this.#ctx.clock()]));
    return rows.map((r) => create(LegalHoldSchema, { category: r.category, reason: r.reason, untilTime: timestampFromDate(new Date(r.until_at)) }));
  }

  async #runStep(s: ClaimedStep): Promise<void> {
    const p = this.#participant(s.service);
    try {
      if (s.type === "export") {
        const doc = await p.exportSubject(s.tenant_id, s.subject_id, `data subject export ${s.request_id}`);
        const body = JSON.stringify({ schema: JSON.parse(doc.schemaJson === "" ? "{}" : doc.schemaJson), data: JSON.parse(doc.documentJson === "" ? "{}" : doc.documentJson), recordCount: doc.recordCount.toString() });
        const sealed = await seal(this.#ctx.keys, s.tenant_id, purposes.document, s.request_id, Buffer.from(body));
        await this.#tenant(s.tenant_id, (em) =>
          em.execute("update dsr_steps set state = 'done', done_at = ?, last_error = '', document = ?, result = ? where request_id = ? and service = ? and state <> 'done'", [this.#ctx.clock(), sealed, JSON.stringify({ recordCount: doc.recordCount.toString() }), s.request_id, s.service]),
        );
      } else if (s.type === "rectification") {
        // Opening the values needs keys: when keys is the one down, the step says so.
        let corrections: FieldCorrection[];
        try {
          corrections = await this.#corrections(s.tenant_id, s.request_id);
        } catch (err) {
          await this.#stepFailed(s, err, "keys");
          return;
        }
        const out = await p.rectifySubject(s.tenant_id, s.subject_id, s.request_id, corrections);
        const rectifications = out.fields.map((f) => ({ field: f.field, outcome: f.outcome, note: f.note.slice(0, 500) }));
        await this.#tenant(s.tenant_id, (em) =>
          em.execute("update dsr_steps set state = 'done', done_at = ?, last_error = '', result = ? where request_id = ? and service = ? and state <> 'done'", [this.#ctx.clock(), JSON.stringify({ rectifications }), s.request_id, s.service]),
        );
      } else {
        const out = await p.eraseSubject(s.tenant_id, s.subject_id, s.request_id, await this.#holds(s.tenant_id));
        await this.#tenant(s.tenant_id, (em) =>
          em.execute("update dsr_steps set state = 'done', done_at = ?, last_error = '', result = ? where request_id = ? and service = ? and state <> 'done'", [this.#ctx.clock(), JSON.stringify({ erasures: erasuresToJson(out.categories) }), s.request_id, s.service]),
        );
        // The other services' steps waited for identity's: they may run at once.
        if (s.service === "identity") this.#again = true;
      }
    } catch (err) {
      await this.#stepFailed(s, err);
    }
  }

  /** A rectification's corrections, opened (none once the request ended or the subject was erased). */
  async #corrections(tenantId: string, requestId: string): Promise<FieldCorrection[]> {
    const [row] = await this.#tenant(tenantId, (em) => em.execute<{ corrections: Buffer | null }[]>("select corrections from dsr_requests where id = ?", [requestId]));
    if (row === undefined || row.corrections === null) return [];
    const list = JSON.parse((await open(this.#ctx.keys, tenantId, purposes.corrections, requestId, row.corrections)).toString("utf8")) as { field: string; value: string }[];
    return list.map((c) => create(FieldCorrectionSchema, c));
  }

  /**
   * Ends a rectification whose every step is done: completed when some
   * service applied (or already held) each correction; otherwise it stays
   * in progress for an officer (CompleteRectification), its state_reason
   * naming what no service applied and what a service refused, and the
   * saga does not look at it again.
   */
  async #finishRectification(r: { id: string; tenant_id: string }): Promise<void> {
    const steps = await this.#tenant(r.tenant_id, (em) => em.execute<Pick<StepRow, "service" | "result">[]>("select service, result from dsr_steps where request_id = ? order by service", [r.id]));
    const [row] = await this.#tenant(r.tenant_id, (em) => em.execute<{ corrected_fields: string[] }[]>("select corrected_fields from dsr_requests where id = ?", [r.id]));
    const applied = new Map<string, string[]>();
    const refused: string[] = [];
    for (const s of steps) {
      for (const f of s.result.rectifications ?? []) {
        if (f.outcome === RectificationOutcome.APPLIED || f.outcome === RectificationOutcome.UNCHANGED) applied.set(f.field, [...(applied.get(f.field) ?? []), s.service]);
        else if (f.outcome === RectificationOutcome.REFUSED) refused.push(`${f.field} (${s.service}: ${f.note})`);
      }
    }
    const fields = row?.corrected_fields ?? [];
    const unapplied = fields.filter((f) => !applied.has(f));
    const done = `corrected: ${fields.filter((f) => applied.has(f)).map((f) => `${f} (${applied.get(f)!.join(", ")})`).join("; ") || "nothing"}`;
    if (unapplied.length === 0 && refused.length === 0) {
      await this.#complete(r.tenant_id, r.id, { corrections: null, state_reason: done.slice(0, 2000) });
      return;
    }
    const reason = `${done}; left for CompleteRectification: ${[...unapplied.filter((f) => !refused.some((x) => x.startsWith(`${f} (`))).map((f) => `${f} (no service holds it)`), ...refused].join("; ")}`;
    await this.#tenant(r.tenant_id, (em) => em.execute("update dsr_requests set saga_finished_at = ?, state_reason = ? where id = ? and state = 'in_progress'", [this.#ctx.clock(), reason.slice(0, 2000), r.id]));
  }

  /** Records a failed step; `source` is the service whose error it was (the participant, or keys opening sealed values). */
  async #stepFailed(s: ClaimedStep, err: unknown, source = s.service): Promise<void> {
    const ce = ConnectError.from(err);
    const message = shown(source, ce);
    const now = this.#ctx.clock();
    if (!permanent.has(ce.code)) {
      this.#logger.info({ request: s.request_id, service: s.service, attempts: s.attempts, code: Code[ce.code] }, "participant step failed; retrying with back-off");
      await this.#tenant(s.tenant_id, (em) => em.execute("update dsr_steps set state = 'retrying', last_error = ?, next_attempt_at = ? where request_id = ? and service = ? and state <> 'done'", [message, new Date(now.getTime() + this.#backoff(s.attempts)), s.request_id, s.service]));
      return;
    }
    this.#logger.warn({ request: s.request_id, service: s.service, code: Code[ce.code] }, "participant refused the step; the request fails");
    await this.#tenant(s.tenant_id, async (em) => {
      await em.execute("update dsr_steps set state = 'failed', last_error = ?, done_at = ? where request_id = ? and service = ? and state <> 'done'", [message, now, s.request_id, s.service]);
      const r = (await em.execute<RequestRow[]>(`select ${requestColumns} from dsr_requests where id = ? for update`, [s.request_id]))[0];
      if (r === undefined || r.state !== "in_progress") return;
      const failed = (await em.execute<RequestRow[]>(`update dsr_requests set state = 'failed', state_reason = ?, completed_at = ? where id = ? returning ${requestColumns}`, [`${s.service}: ${message}`, now, r.id]))[0]!;
      await publishChange(em, this.#ctx.deps.events, "failed", failed, r.state);
    });
  }

  async #finishRequests(): Promise<void> {
    const ready = await this.#platform("compliance saga: finishing requests", (em) =>
      em.execute<{ id: string; tenant_id: string; type: string; subject_id: string }[]>(
        `select r.id, r.tenant_id, r.type, r.subject_id from dsr_requests r
         where r.state = 'in_progress' and r.saga_finished_at is null
           and exists (select 1 from dsr_steps s where s.request_id = r.id)
           and not exists (select 1 from dsr_steps s where s.request_id = r.id and s.state <> 'done')
         limit ?`,
        [batch],
      ),
    );
    for (const r of ready) {
      try {
        await (r.type === "export" ? this.#finishExport(r) : r.type === "rectification" ? this.#finishRectification(r) : this.#complete(r.tenant_id, r.id, {}));
      } catch (err) {
        this.#logger.warn({ request: r.id, err: describeError(err) }, "could not finish the request; retrying next round");
        // Said on the request, without the error's text (which may be a statement): Get shows why it waits.
        const code = err instanceof ConnectError ? Code[err.code] : "internal";
        await this.#tenant(r.tenant_id, (em) => em.execute("update dsr_requests set state_reason = ? where id = ? and state = 'in_progress'", [`every service is done; assembling the result failed (${code}); retrying`, r.id])).catch(() => undefined);
      }
    }
  }

  async #complete(tenantId: string, id: string, set: Record<string, unknown>): Promise<boolean> {
    return this.#tenant(tenantId, async (em) => {
      const r = (await em.execute<RequestRow[]>(`select ${requestColumns} from dsr_requests where id = ? for update`, [id]))[0];
      if (r === undefined || r.state !== "in_progress") return false;
      const cols = Object.keys(set);
      const done = (
        await em.execute<RequestRow[]>(`update dsr_requests set state = 'completed', completed_at = ?${"state_reason" in set ? "" : ", state_reason = ''"}${cols.map((c) => `, ${c} = ?${c === "export_services" ? "::text[]" : ""}`).join("")} where id = ? returning ${requestColumns}`, [this.#ctx.clock(), ...cols.map((c) => set[c]), id])
      )[0]!;
      if (cols.length > 0) await em.execute("update dsr_steps set document = null where request_id = ?", [id]);
      await publishChange(em, this.#ctx.deps.events, "completed", done, r.state);
      return true;
    });
  }

  async #finishExport(r: { id: string; tenant_id: string; subject_id: string }): Promise<void> {
    const docs = await this.#tenant(r.tenant_id, (em) => em.execute<{ service: string; document: Buffer | null }[]>("select service, document from dsr_steps where request_id = ? order by service", [r.id]));
    const services: Record<string, unknown> = {};
    const listed: { name: string; record_count: string }[] = [];
    for (const d of docs) {
      if (d.document === null) return; // finished by another replica meanwhile
      const part = JSON.parse((await open(this.#ctx.keys, r.tenant_id, purposes.document, r.id, d.document)).toString("utf8")) as { schema: unknown; data: unknown; recordCount: string };
      services[d.service] = { schema: part.schema, data: part.data };
      listed.push({ name: d.service, record_count: part.recordCount });
    }
    const now = this.#ctx.clock();
    const rule = await this.#tenant(r.tenant_id, (em) => retentionRule(em, RetentionCategory.EXPORTS));
    const expires = new Date(now.getTime() + exportLifetimeMs(this.#ctx.deps.config.COMPLIANCE_EXPORT_TTL_HOURS, rule));
    const manifest = { format: "bulwark.compliance.export/v1", request_id: r.id, tenant_id: r.tenant_id, subject_id: r.subject_id, created_at: now.toISOString(), expires_at: expires.toISOString(), services: listed };
    const bundle = Buffer.from(JSON.stringify({ manifest, services }));
    const sealed = await seal(this.#ctx.keys, r.tenant_id, purposes.bundle, r.id, bundle);
    await this.#complete(r.tenant_id, r.id, {
      export_bundle: sealed,
      export_sha256: createHash("sha256").update(bundle).digest("hex"),
      export_size: bundle.length,
      export_services: `{${listed.map((l) => l.name).join(",")}}`,
      export_created_at: now,
      export_expires_at: expires,
    });
  }

  // Tenant deletions.

  async #startDueDeletions(): Promise<void> {
    const now = this.#ctx.clock();
    await this.#platform("compliance saga: starting due tenant deletions", async (em) => {
      const due = await em.execute<DeletionRow[]>("update tenant_deletions set state = 'in_progress', updated_at = ? where id in (select id from tenant_deletions where state = 'scheduled' and purge_at <= ? for update skip locked limit ?) returning *", [now, now, batch]);
      for (const d of due) {
        const order = deletionOrder([...this.#ctx.participants.keys()]);
        for (const [position, service] of order.entries()) {
          await em.execute("insert into tenant_deletion_steps (deletion_id, service, position, state, next_attempt_at) values (?, ?, ?, 'pending', ?) on conflict do nothing", [d.id, service, position, now]);
        }
        await publishDeletion(em, this.#ctx.deps.events, "started", d);
      }
    });
  }

  async #claimDeletionSteps(): Promise<ClaimedDeletionStep[]> {
    const now = this.#ctx.clock();
    return this.#platform("compliance saga: claiming due tenant deletion steps", (em) =>
      em.execute<ClaimedDeletionStep[]>(
        `with due as (
           select s.deletion_id, s.service from tenant_deletion_steps s join tenant_deletions d on d.id = s.deletion_id
           where d.state = 'in_progress' and s.state in ('pending', 'retrying') and s.next_attempt_at <= ?
             and not exists (select 1 from tenant_deletion_steps p where p.deletion_id = s.deletion_id and p.position < s.position and p.state <> 'done')
           order by s.next_attempt_at limit ? for update of s skip locked)
         update tenant_deletion_steps s set attempts = s.attempts + 1, next_attempt_at = ?
         from due, tenant_deletions d where s.deletion_id = due.deletion_id and s.service = due.service and d.id = s.deletion_id
         returning s.deletion_id, s.service, d.tenant_id, s.attempts`,
        [now, batch, new Date(now.getTime() + leaseMs)],
      ),
    );
  }

  async #runDeletionStep(s: ClaimedDeletionStep): Promise<void> {
    try {
      // Compliance keeps the holds in force through its own step (it runs first), so every later step sees them.
      const out = await this.#participant(s.service).eraseTenant(s.tenant_id, s.deletion_id, await this.#holds(s.tenant_id));
      await this.#platform("compliance saga: recording a tenant deletion step", (em) =>
        em.execute("update tenant_deletion_steps set state = 'done', done_at = ?, last_error = '', result = ? where deletion_id = ? and service = ?", [this.#ctx.clock(), JSON.stringify({ erasures: erasuresToJson(out.categories) }), s.deletion_id, s.service]),
      );
      // The next step in order may run at once.
      this.#again = true;
    } catch (err) {
      const ce = ConnectError.from(err);
      const message = shown(s.service, ce);
      const now = this.#ctx.clock();
      const failed = permanent.has(ce.code);
      this.#logger.warn({ deletion: s.deletion_id, service: s.service, attempts: s.attempts, code: Code[ce.code] }, failed ? "a service refused the tenant deletion step" : "tenant deletion step failed; retrying with back-off");
      // A tenant deletion is never given up: a refused step stays visible as failed until an operator acts, a failing one is retried.
      await this.#platform("compliance saga: recording a tenant deletion step", (em) =>
        em.execute("update tenant_deletion_steps set state = ?, last_error = ?, next_attempt_at = ? where deletion_id = ? and service = ?", [failed ? "failed" : "retrying", message, new Date(now.getTime() + this.#backoff(s.attempts)), s.deletion_id, s.service]),
      );
    }
  }

  async #finishDeletions(): Promise<void> {
    const now = this.#ctx.clock();
    await this.#platform("compliance saga: finishing tenant deletions", async (em) => {
      const done = await em.execute<DeletionRow[]>(
        `update tenant_deletions d set state = 'completed', completed_at = ?, updated_at = ?
         where d.id in (select id from tenant_deletions x where x.state = 'in_progress' and not exists (select 1 from tenant_deletion_steps s where s.deletion_id = x.id and s.state <> 'done') for update skip locked limit ?)
         returning *`,
        [now, now, batch],
      );
      for (const d of done) await publishDeletion(em, this.#ctx.deps.events, "completed", d);
    });
  }
}
