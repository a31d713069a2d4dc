import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ExportManifestSchema,
  LegalHoldChangedSchema,
  LegalHoldSchema,
  RequestType,
  UserState,
  type ApproveErasureRequest,
  type CompleteRectificationRequest,
  type CreateDataSubjectRequestRequest,
  type CreateLegalHoldRequest,
  type DataSubjectRequestService,
  type DeleteLegalHoldRequest,
  type DownloadExportRequest,
  type DownloadExportResponse,
  type ExtendDataSubjectRequestRequest,
  type FieldCorrection,
  type GetDataSubjectRequestRequest,
  type LegalHold,
  type ListDataSubjectRequestsRequest,
  type RejectDataSubjectRequestRequest,
  type VerifySubjectIdentityRequest,
} from "@bulwark/contracts";
import { currentContext, decodeCursor, encodeCursor, failedPrecondition, hasPermission, invalidArgument, isEmailAddress, newId, notFound, permissionDenied, runAsService } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { ComplianceContext } from "../context.js";
import { personOf, refuseMorePrivilegedUser } from "../person.js";
import { open, purposes, seal } from "../saga/sealed.js";
import type { SagaWorker } from "../saga/worker.js";
import { addMonths, loadRequest, loadSteps, publishChange, requestColumns, requestToProto, typeNames, type RequestRow } from "./store.js";

/** The most bytes one DownloadExport message carries. */
const chunkBytes = 64 * 1024;

function tenantOfCall(): string {
  const t = currentContext()?.tenantId;
  if (t === undefined || t === "") throw permissionDenied("the call names no tenant (platform principals name one with the bulwark-tenant header)");
  return t;
}

function principalId(): string {
  return currentContext()?.principal?.id ?? "";
}

/** Identity's Owner role: a tenant must keep one active holder. */
const ownerRoleId = "system:owner";

/** Why an erasure of the tenant's last owner is refused (at creation, at approval, and by identity's participant). */
const lastOwnerErasure = "the subject is the tenant's last owner: transfer ownership first (make another active user Owner), then request the erasure";

/** The services a request's saga runs across: the configured participants, then compliance itself. */
export function sagaServices(ctx: ComplianceContext): string[] {
  return [...ctx.participants.keys(), "compliance"];
}

/**
 * The corrections of a new request, checked before anything is kept: only
 * a rectification names them, each field once, and the values of the
 * fields identity corrects in the form identity accepts (so a malformed
 * value is refused now, not by a saga step weeks later).
 */
export function checkCorrections(type: RequestType, corrections: readonly FieldCorrection[]): void {
  if (corrections.length === 0) return;
  if (type !== RequestType.RECTIFICATION) throw invalidArgument("corrections", "only a rectification names corrections");
  const seen = new Set<string>();
  for (const [i, c] of corrections.entries()) {
    if (seen.has(c.field)) throw invalidArgument(`corrections[${i}].field`, "names a field already corrected in this request");
    seen.add(c.field);
    if (c.field === "email" && !isEmailAddress(c.value.trim().toLowerCase())) throw invalidArgument(`corrections[${i}].value`, "must be an email address");
    if (c.field === "display_name" && (c.value.trim() === "" || c.value.trim().length > 200)) throw invalidArgument(`corrections[${i}].value`, "must be a display name of 1-200 characters");
  }
}

/**
 * bulwark.compliance.v1.DataSubjectRequestService: the requests' state
 * machine (see the proto), each transition written with its event in one
 * transaction. Starting a request inserts one step per service; the saga
 * worker (saga/worker.ts) does the rest.
 */
export class DataSubjectRequestServiceImpl implements ServiceImpl<typeof DataSubjectRequestService> {
  readonly #ctx: ComplianceContext;
  readonly #worker: SagaWorker;

  constructor(ctx: ComplianceContext, worker: SagaWorker) {
    this.#ctx = ctx;
    this.#worker = worker;
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const out = await this.#ctx.deps.db.transaction(fn);
    this.#ctx.deps.relay.nudge();
    return out;
  }

  async #locked(em: EntityManager, id: string): Promise<RequestRow> {
    const row = await loadRequest(em, id, true);
    if (row === undefined) throw notFound("data subject request");
    return row;
  }

  async #update(em: EntityManager, row: RequestRow, set: Partial<RequestRow>, verb: string): Promise<RequestRow> {
    const cols = Object.keys(set);
    const updated = (await em.execute<RequestRow[]>(`update dsr_requests set ${cols.map((c) => `${c} = ?`).join(", ")} where id = ? returning ${requestColumns}`, [...cols.map((c) => (set as Record<string, unknown>)[c]), row.id]))[0]!;
    await publishChange(em, this.#ctx.deps.events, verb, updated, row.state);
    return updated;
  }

  /**
   * FAILED_PRECONDITION (transfer ownership first) when erasing `subjectId`
   * would leave the tenant without an owner: the subject holds Owner and no
   * other active user does. Asked of identity as compliance; UNAVAILABLE if
   * identity cannot say. `lookUp` reads the subject's roles first (a
   * subject already gone holds none).
   */
  async #refuseLastOwner(tenantId: string, subjectId: string, lookUp = false): Promise<void> {
    const refuse = await runAsService("compliance", tenantId, async () => {
      if (lookUp) {
        const roles = await this.#ctx.identity.users.getUser({ userId: subjectId }).then(
          (r): readonly string[] => r.user?.roleIds ?? [],
          (err: unknown): readonly string[] => {
            if (ConnectError.from(err).code === Code.NotFound) return [];
            throw err;
          },
        );
        if (!roles.includes(ownerRoleId)) return false;
      }
      const { users } = await this.#ctx.identity.users.listUsers({ roleId: ownerRoleId, state: UserState.ACTIVE, pageSize: 2 });
      return !users.some((u) => u.id !== subjectId);
    }).catch((err: unknown) => {
      throw new ConnectError("identity cannot confirm the tenant's owners now; retry", Code.Unavailable, undefined, undefined, err);
    });
    if (refuse) throw failedPrecondition(lastOwnerErasure);
  }

  /**
   * The saga applies corrections later as compliance, which identity lets
   * do anything: so the caller who files or starts them is held to what
   * identity asks of an UpdateUser now — `identity.users.update`, and no
   * permission the subject holds that the caller lacks (acting on oneself
   * aside). Without it a compliance officer could move an Owner's email to
   * their own address and reset the password.
   */
  async #refuseCorrectionsBeyondCaller(tenantId: string, subjectId: string): Promise<void> {
    const principal = currentContext()?.principal;
    if (principal?.kind === "user" && principal.id === subjectId) return;
    if (principal === undefined || !hasPermission(principal, "identity.users.update")) throw permissionDenied("correcting a user's data needs identity.users.update");
    await refuseMorePrivilegedUser(this.#ctx.identity, tenantId, subjectId, "nobody may correct the data of a user more privileged than themselves");
  }

  /** Moves a request to in progress and writes one pending step per service (exports, erasures, rectifications with corrections). */
  async #start(em: EntityManager, row: RequestRow): Promise<RequestRow> {
    const now = this.#ctx.clock();
    const started = await this.#update(em, row, { state: "in_progress" }, "started");
    if (row.type !== "rectification" || row.corrected_fields.length > 0) {
      for (const service of sagaServices(this.#ctx)) {
        await em.execute("insert into dsr_steps (request_id, tenant_id, service, state, next_attempt_at) values (?, ?, ?, 'pending', ?) on conflict do nothing", [row.id, row.tenant_id, service, now]);
      }
    }
    return started;
  }

  async createDataSubjectRequest(req: CreateDataSubjectRequestRequest) {
    const tenantId = tenantOfCall();
    const type = typeNames[req.type];
    if (type === undefined) throw invalidArgument("type", "must be REQUEST_TYPE_EXPORT, REQUEST_TYPE_ERASURE or REQUEST_TYPE_RECTIFICATION");
    const principal = currentContext()?.principal;
    const extra = req.type === RequestType.ERASURE ? "compliance.erasures.create" : req.type === RequestType.EXPORT ? "compliance.exports.create" : undefined;
    if (extra !== undefined && (principal === undefined || !hasPermission(principal, extra))) throw permissionDenied(`missing permission ${extra}`);
    let roleIds: readonly string[] = [];
    checkCorrections(req.type, req.corrections);
    try {
      roleIds = (await runAsService("compliance", tenantId, () => this.#ctx.identity.users.getUser({ userId: req.subjectId }))).user?.roleIds ?? [];
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.NotFound || ce.code === Code.InvalidArgument) throw notFound("user");
      throw new ConnectError("identity cannot confirm the subject now; retry", Code.Unavailable);
    }
    if (req.type === RequestType.ERASURE && roleIds.includes(ownerRoleId)) await this.#refuseLastOwner(tenantId, req.subjectId);
    if (req.corrections.length > 0) await this.#refuseCorrectionsBeyondCaller(tenantId, req.subjectId);
    const now = this.#ctx.clock();
    const id = newId("dsr");
    // The correct values are the person's data: kept only sealed (keys wraps the data key), the field names beside them.
    const corrections = req.corrections.length === 0 ? null : await seal(this.#ctx.keys, tenantId, purposes.corrections, id, Buffer.from(JSON.stringify(req.corrections.map((c) => ({ field: c.field, value: c.value })))));
    const row = await this.#write(async (em) => {
      const r = (
        await em.execute<RequestRow[]>(
          `insert into dsr_requests (id, tenant_id, type, state, subject_id, requested_by, details, created_at, due_at, corrections, corrected_fields) values (?, ?, ?, 'received', ?, ?, ?, ?, ?, ?, ?::text[]) returning ${requestColumns}`,
          [id, tenantId, type, req.subjectId, principalId(), req.details, now, addMonths(now, 1), corrections, `{${req.corrections.map((c) => c.field).join(",")}}`],
        )
      )[0]!;
      await publishChange(em, this.#ctx.deps.events, "received", r, "");
      return r;
    });
    return { request: requestToProto(row) };
  }

  async getDataSubjectRequest(req: GetDataSubjectRequestRequest) {
    tenantOfCall();
    const [row, steps] = await this.#ctx.deps.db.transaction(async (em) => [await loadRequest(em, req.id), await loadSteps(em, req.id)] as const);
    if (row === undefined) throw notFound("data subject request");
    return { request: requestToProto(row, steps) };
  }

  async listDataSubjectRequests(req: ListDataSubjectRequestsRequest) {
    tenantOfCall();
    const size = req.pageSize === 0 ? 50 : req.pageSize;
    const filter = JSON.stringify({ s: req.subjectId });
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, filter, "dsr_");
    const where: string[] = [];
    const params: unknown[] = [];
    if (req.subjectId !== "") {
      where.push("subject_id = ?");
      params.push(req.subjectId);
    }
    if (cursor !== undefined) {
      where.push("(created_at, id) < (?, ?)");
      params.push(cursor.createdAt, cursor.id);
    }
    const rows = await this.#ctx.deps.db.transaction((em) =>
      em.execute<RequestRow[]>(`select ${requestColumns} from dsr_requests ${where.length > 0 ? `where ${where.join(" and ")}` : ""} order by created_at desc, id desc limit ?`, [...params, size + 1]),
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return { requests: page.map((r) => requestToProto(r)), nextPageToken: rows.length > size && last !== undefined ? encodeCursor({ createdAt: new Date(last.created_at), id: last.id, filter }) : "" };
  }

  async verifySubjectIdentity(req: VerifySubjectIdentityRequest) {
    const tenantId = tenantOfCall();
    // Verifying starts a rectification's saga: whoever starts it is held to the same rule as whoever filed it.
    const pending = await this.#ctx.deps.db.transaction((em) => loadRequest(em, req.id));
    if (pending?.type === "rectification" && pending.state === "received" && (pending.corrected_fields ?? []).length > 0) await this.#refuseCorrectionsBeyondCaller(tenantId, pending.subject_id);
    const row = await this.#write(async (em) => {
      const r = await this.#locked(em, req.id);
      if (r.state !== "received") throw failedPrecondition(`the request is ${r.state}, not received`);
      const verified = await this.#update(em, r, { state: "identity_verified", verified_by: principalId(), verify_method: req.method } as Partial<RequestRow>, "verified");
      return r.type === "erasure" ? verified : this.#start(em, verified);
    });
    this.#worker.nudge();
    return { request: requestToProto(row) };
  }

  async approveErasure(req: ApproveErasureRequest) {
    const tenantId = tenantOfCall();
    const pending = await this.#ctx.deps.db.transaction((em) => loadRequest(em, req.id));
    if (pending === undefined) throw notFound("data subject request");
    // Ownership may have changed since the request was received: checked again before anything is erased.
    if (pending.type === "erasure" && pending.state === "identity_verified" && pending.approved_by === null) await this.#refuseLastOwner(tenantId, pending.subject_id, true);
    // The people behind requester and approver (an API key is its owner), resolved outside the transaction: it calls keys.
    const [requester, approver] = await Promise.all([personOf(this.#ctx.deps, tenantId, pending.requested_by), personOf(this.#ctx.deps, tenantId, principalId())]);
    const row = await this.#write(async (em) => {
      const r = await this.#locked(em, req.id);
      if (r.type !== "erasure") throw failedPrecondition("only an erasure needs approval");
      if (r.state !== "identity_verified" || r.approved_by !== null) throw failedPrecondition(`the erasure is ${r.state}${r.approved_by !== null ? " and approved" : ""}; only a verified erasure awaiting approval can be approved`);
      if (principalId() === r.requested_by || approver === requester) throw permissionDenied("the requester cannot approve their own erasure (nor through their API key); a second person must");
      const approved = await this.#update(em, r, { approved_by: principalId() }, "approved");
      return this.#start(em, approved);
    });
    this.#worker.nudge();
    return { request: requestToProto(row) };
  }

  async rejectDataSubjectRequest(req: RejectDataSubjectRequestRequest) {
    tenantOfCall();
    const row = await this.#write(async (em) => {
      const r = await this.#locked(em, req.id);
      if (r.state !== "received" && r.state !== "identity_verified") throw failedPrecondition(`the request is ${r.state}; only a request that has not started can be rejected`);
      await em.execute("update dsr_requests set corrections = null where id = ?", [r.id]);
      return this.#update(em, r, { state: "rejected", state_reason: req.reason, completed_at: this.#ctx.clock() }, "rejected");
    });
    return { request: requestToProto(row) };
  }

  async extendDataSubjectRequest(req: ExtendDataSubjectRequestRequest) {
    tenantOfCall();
    const row = await this.#write(async (em) => {
      const r = await this.#locked(em, req.id);
      if (["completed", "rejected", "failed"].includes(r.state)) throw failedPrecondition(`the request is ${r.state}`);
      const total = r.extension_months + req.months;
      if (total > 2) throw failedPrecondition(`a request may be extended by two months in all; ${r.extension_months} already granted`);
      return this.#update(em, r, { extension_months: total, extension_reason: req.reason, due_at: addMonths(new Date(r.created_at), 1 + total) }, "extended");
    });
    return { request: requestToProto(row) };
  }

  async completeRectification(req: CompleteRectificationRequest) {
    tenantOfCall();
    const row = await this.#write(async (em) => {
      const r = await this.#locked(em, req.id);
      if (r.type !== "rectification" || r.state !== "in_progress") throw failedPrecondition("only an in-progress rectification can be completed this way");
      // The sealed values were for the saga; the request ends, they go.
      await em.execute("update dsr_requests set corrections = null where id = ?", [r.id]);
      return this.#update(em, r, { state: "completed", state_reason: req.note, completed_at: this.#ctx.clock() }, "completed");
    });
    return { request: requestToProto(row) };
  }

  async *downloadExport(req: DownloadExportRequest): AsyncIterable<DownloadExportResponse> {
    const tenantId = tenantOfCall();
    const found = await this.#ctx.deps.db.transaction(async (em) => {
      const r = (await em.execute<(RequestRow & { export_bundle: Buffer | null; export_sha256: string | null; export_services: string[] | null; export_created_at: Date | null })[]>(`select ${requestColumns}, export_bundle, export_sha256, export_services, export_created_at from dsr_requests where id = ?`, [req.id]))[0];
      return r;
    });
    if (found === undefined || found.type !== "export") throw notFound("export");
    if (found.state !== "completed") throw failedPrecondition(`the export is ${found.state}, not completed`);
    if (found.export_bundle === null || found.export_expires_at === null || new Date(found.export_expires_at) <= this.#ctx.clock()) throw failedPrecondition("the export has expired and its bundle was deleted");
    const bundle = await open(this.#ctx.keys, tenantId, purposes.bundle, found.id, found.export_bundle);
    yield {
      $typeName: "bulwark.compliance.v1.DownloadExportResponse",
      part: {
        case: "manifest",
        value: create(ExportManifestSchema, {
          requestId: found.id,
          tenantId,
          subjectId: found.subject_id,
          createTime: found.export_created_at === null ? undefined : timestampFromDate(new Date(found.export_created_at)),
          expireTime: timestampFromDate(new Date(found.export_expires_at)),
          sizeBytes: BigInt(bundle.length),
          sha256: found.export_sha256 ?? createHash("sha256").update(bundle).digest("hex"),
          services: found.export_services ?? [],
        }),
      },
    };
    for (let i = 0; i < bundle.length; i += chunkBytes) yield { $typeName: "bulwark.compliance.v1.DownloadExportResponse", part: { case: "chunk", value: bundle.subarray(i, i + chunkBytes) } };
  }

  async createLegalHold(req: CreateLegalHoldRequest) {
    const tenantId = tenantOfCall();
    const hold = req.hold!;
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(hold.category)) throw invalidArgument("hold.category", "must be lower snake case (billing_records, audit_entries)");
    if (hold.untilTime === undefined) throw invalidArgument("hold.until_time", "is required");
    const until = timestampDate(hold.untilTime);
    if (!(until > this.#ctx.clock())) throw invalidArgument("hold.until_time", "must be in the future");
    const id = newId("lgh");
    const recorded = create(LegalHoldSchema, { category: hold.category, reason: hold.reason, untilTime: hold.untilTime });
    await this.#write(async (em) => {
      await em.execute("insert into legal_holds (id, tenant_id, category, reason, until_at, created_by, created_at) values (?, ?, ?, ?, ?, ?, ?)", [id, tenantId, hold.category, hold.reason, until, principalId(), this.#ctx.clock()]);
      await publishHold(em, this.#ctx, "created", id, recorded);
    });
    return { id, hold: recorded };
  }

  async listLegalHolds() {
    tenantOfCall();
    const rows = await this.#ctx.deps.db.transaction((em) => em.execute<{ id: string; category: string; reason: string; until_at: Date }[]>("select id, category, reason, until_at from legal_holds where until_at > ? order by category, id", [this.#ctx.clock()]));
    return { holds: rows.map((r) => ({ $typeName: "bulwark.compliance.v1.RecordedLegalHold" as const, id: r.id, hold: create(LegalHoldSchema, { category: r.category, reason: r.reason, untilTime: timestampFromDate(new Date(r.until_at)) }) })) };
  }

  async deleteLegalHold(req: DeleteLegalHoldRequest) {
    tenantOfCall();
    const rows = await this.#write(async (em) => {
      const gone = await em.execute<{ id: string; category: string; reason: string; until_at: Date }[]>("delete from legal_holds where id = ? returning id, category, reason, until_at", [req.id]);
      for (const g of gone) await publishHold(em, this.#ctx, "deleted", g.id, create(LegalHoldSchema, { category: g.category, reason: g.reason, untilTime: timestampFromDate(new Date(g.until_at)) }));
      return gone;
    });
    if (rows.length === 0) throw notFound("legal hold");
    return {};
  }
}

/**
 * bulwark.compliance.legal_hold.created / .deleted, in the outbox of the
 * transaction that changed the hold: identity's and audit's retention jobs
 * keep a copy of the holds in force from them.
 */
async function publishHold(em: EntityManager, ctx: ComplianceContext, verb: "created" | "deleted", id: string, hold: LegalHold): Promise<void> {
  await ctx.deps.events.publish(em, { aggregate: "legal_hold", verb, aggregateId: id, schema: LegalHoldChangedSchema, payload: create(LegalHoldChangedSchema, { id, hold }) });
}
