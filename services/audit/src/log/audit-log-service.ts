import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ExportedEntrySchema,
  Outcome,
  type AuditEntry,
  type AuditLogService,
  type ExportEntriesRequest,
  type ExportEntriesResponse,
  type GetCheckpointRequest,
  type GetCheckpointResponse,
  type GetConsistencyProofRequest,
  type GetConsistencyProofResponse,
  type GetEntryRequest,
  type GetEntryResponse,
  type GetInclusionProofRequest,
  type GetInclusionProofResponse,
  type GetVerifierKeyRequest,
  type GetVerifierKeyResponse,
  type ListEntriesRequest,
  type ListEntriesResponse,
} from "@bulwark/contracts";
import { currentContext, decodeCursor, encodeCursor, invalidArgument, isPlatformPrincipal, notFound, runAsPlatform, runInTenant } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { AuditContext } from "../context.js";
import { platformTenant } from "../ingest/mapping.js";
import type { Checkpoints, StoredCheckpoint } from "../tree/checkpoints.js";
import { entryOfLeaf } from "../tree/leaf.js";
import { openPersonal } from "./personal.js";
import { TreeRangeError, type TreeStore } from "../tree/store.js";

const tenantPattern = /^(ten_[A-Za-z0-9_-]{1,60}|platform)$/;

/** The tenant whose log a call reads: the caller's own, or the one an operator names ("" for every tenant where `acrossTenants`). */
export function tenantOfCall(requested: string, acrossTenants = false): string {
  if (requested !== "" && !tenantPattern.test(requested)) throw invalidArgument("tenant_id", "must be a tenant id (ten_…) or platform");
  const principal = currentContext()?.principal;
  if (principal === undefined) throw new ConnectError("a valid credential is required", Code.Unauthenticated);
  if (isPlatformPrincipal(principal)) {
    if (requested === "" && !acrossTenants) throw invalidArgument("tenant_id", "is required outside a tenant");
    return requested;
  }
  const own = principal.tenantId ?? "";
  if (requested !== "" && requested !== own) throw notFound("audit log");
  return own;
}

/**
 * bulwark.audit.v1.AuditLogService: reads, proofs and exports of the
 * caller's tenant log (an operator's of the tenant it names), every query
 * under the tenant's row-level security.
 */
export class AuditLogServiceImpl implements ServiceImpl<typeof AuditLogService> {
  readonly #db: Database;
  readonly #tree: TreeStore;
  readonly #checkpoints: Checkpoints;
  readonly #ctx: AuditContext;

  constructor(ctx: AuditContext) {
    this.#ctx = ctx;
    this.#db = ctx.deps.db;
    this.#tree = ctx.tree;
    this.#checkpoints = ctx.checkpoints;
  }

  #in<T>(tenantId: string, fn: (em: EntityManager) => Promise<T>): Promise<T> {
    return runInTenant(tenantId, () => this.#db.transaction(fn));
  }

  /** The latest checkpoint, signed now if there is none yet or `refresh` asks; NOT_FOUND for an empty trail. */
  async #checkpoint(tenantId: string, refresh: boolean): Promise<StoredCheckpoint> {
    let cp = refresh ? undefined : await this.#in(tenantId, (em) => this.#checkpoints.latest(em, tenantId));
    cp ??= await runInTenant(tenantId, () => this.#checkpoints.sign(tenantId));
    if (cp === undefined) throw notFound("audit log");
    return cp;
  }

  async getCheckpoint(req: GetCheckpointRequest): Promise<GetCheckpointResponse> {
    const tenantId = tenantOfCall(req.tenantId);
    const cp = await this.#checkpoint(tenantId, req.refresh);
    return { $typeName: "bulwark.audit.v1.GetCheckpointResponse", checkpoint: cp.note };
  }

  async getVerifierKey(req: GetVerifierKeyRequest): Promise<GetVerifierKeyResponse> {
    const tenantId = tenantOfCall(req.tenantId);
    return { $typeName: "bulwark.audit.v1.GetVerifierKeyResponse", verifierKey: await this.#checkpoints.verifierKey(tenantId) };
  }

  async getInclusionProof(req: GetInclusionProofRequest): Promise<GetInclusionProofResponse> {
    const tenantId = tenantOfCall(req.tenantId);
    if (req.leaf.case === undefined) throw invalidArgument("leaf_index", "or entry_id is required");
    if (req.leaf.case === "entryId" && !/^aud_[0-9a-f]{1,60}$/.test(req.leaf.value)) throw invalidArgument("entry_id", "must be an entry id (aud_…)");
    let size = Number(req.treeSize);
    if (size === 0) size = (await this.#checkpoint(tenantId, false)).size;
    const leaf = req.leaf;
    return this.#in(tenantId, async (em) => {
      const current = await this.#tree.size(em, tenantId);
      if (current === 0) throw notFound("audit log");
      let index: number;
      if (leaf.case === "entryId") {
        const [row] = await em.execute<{ leaf_index: string }[]>("select leaf_index from leaves where tenant_id = ? and entry_id = ?", [tenantId, leaf.value]);
        if (row === undefined) throw notFound("audit entry");
        index = Number(row.leaf_index);
      } else {
        index = Number(leaf.value);
      }
      if (size > current) throw new ConnectError("tree_size is beyond the current tree", Code.OutOfRange);
      if (index >= size) throw new ConnectError("the leaf is not in a tree of that size", Code.OutOfRange);
      const hashes = await this.#proof(() => this.#tree.inclusionProof(em, tenantId, index, size));
      return { $typeName: "bulwark.audit.v1.GetInclusionProofResponse", leafIndex: BigInt(index), treeSize: BigInt(size), hashes };
    });
  }

  async getConsistencyProof(req: GetConsistencyProofRequest): Promise<GetConsistencyProofResponse> {
    const tenantId = tenantOfCall(req.tenantId);
    if (req.firstSize > req.secondSize) throw invalidArgument("first_size", "must not exceed second_size");
    const first = Number(req.firstSize);
    const second = Number(req.secondSize);
    return this.#in(tenantId, async (em) => {
      const current = await this.#tree.size(em, tenantId);
      if (current === 0) throw notFound("audit log");
      if (second > current) throw new ConnectError("second_size is beyond the current tree", Code.OutOfRange);
      const hashes = await this.#proof(() => this.#tree.consistencyProof(em, tenantId, first, second));
      return { $typeName: "bulwark.audit.v1.GetConsistencyProofResponse", hashes };
    });
  }

  async getEntry(req: GetEntryRequest): Promise<GetEntryResponse> {
    const tenantId = tenantOfCall(req.tenantId);
    const entry = await this.#in(tenantId, async (em) => {
      const [row] = await em.execute<{ leaf: Buffer }[]>("select leaf from entries where tenant_id = ? and entry_id = ? limit 1", [tenantId, req.entryId]);
      return row === undefined ? undefined : entryOfLeaf(row.leaf);
    });
    if (entry === undefined) throw notFound("audit entry");
    const personal = req.decrypt ? await openPersonal(this.#ctx.privacy, tenantId, entry) : {};
    return { $typeName: "bulwark.audit.v1.GetEntryResponse", entry, personal };
  }

  async listEntries(req: ListEntriesRequest): Promise<ListEntriesResponse> {
    const tenantId = tenantOfCall(req.tenantId, true);
    const pageSize = req.pageSize === 0 ? 50 : req.pageSize;
    const start = req.startTime === undefined ? undefined : timestampDate(req.startTime);
    const end = req.endTime === undefined ? undefined : timestampDate(req.endTime);
    if (start !== undefined && !(start.getTime() > -62135596800000 && start.getTime() < 253402300800000)) throw invalidArgument("start_time", "is not a valid time");
    if (end !== undefined && !(end.getTime() > -62135596800000 && end.getTime() < 253402300800000)) throw invalidArgument("end_time", "is not a valid time");
    if (start !== undefined && end !== undefined && start >= end) throw invalidArgument("start_time", "must be before end_time");
    if (!Object.values(Outcome).includes(req.outcome)) throw invalidArgument("outcome", "is not a known outcome");
    const filter = JSON.stringify([tenantId, start?.toISOString(), end?.toISOString(), req.actorId, req.action, req.resourceType, req.resourceId, req.outcome]);
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, filter, "lf_");
    const where: string[] = tenantId === "" ? ["true"] : ["tenant_id = ?"];
    const params: unknown[] = tenantId === "" ? [] : [tenantId];
    const add = (clause: string, ...values: unknown[]): void => {
      where.push(clause);
      params.push(...values);
    };
    if (start !== undefined) add("recorded_at >= ?", start);
    if (end !== undefined) add("recorded_at < ?", end);
    if (req.actorId !== "") add("actor_id = ?", req.actorId);
    if (req.action !== "") {
      if (req.action.endsWith(".")) add("action like ?", `${req.action.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      else add("action = ?", req.action);
    }
    if (req.resourceType !== "") add("resource_type = ?", req.resourceType);
    if (req.resourceId !== "") add("resource_id = ?", req.resourceId);
    if (req.outcome !== Outcome.UNSPECIFIED) add("outcome = ?", req.outcome);
    if (cursor !== undefined) add("(recorded_at, leaf_index) < (?, ?)", cursor.createdAt, Number(cursor.id.slice(3)));
    const scope = <T>(fn: (em: EntityManager) => Promise<T>): Promise<T> =>
      tenantId === "" ? runAsPlatform("an operator lists audit entries across tenants", () => this.#db.transaction(fn)) : this.#in(tenantId, fn);
    const rows = await scope((em) =>
      em.execute<{ leaf: Buffer; recorded_at: Date; leaf_index: string }[]>(`select leaf, recorded_at, leaf_index from entries where ${where.join(" and ")} order by recorded_at desc, leaf_index desc limit ?`, [...params, pageSize + 1]),
    );
    const page = rows.slice(0, pageSize);
    const last = page.at(-1);
    const nextPageToken = rows.length > pageSize && last !== undefined ? encodeCursor({ createdAt: new Date(last.recorded_at), id: `lf_${last.leaf_index}`, filter }) : "";
    return { $typeName: "bulwark.audit.v1.ListEntriesResponse", entries: page.map((r): AuditEntry => entryOfLeaf(r.leaf)), nextPageToken };
  }

  /**
   * Streams the trail in pages of AUDIT_EXPORT_PAGE_SIZE leaves (500), keyset by leaf index,
   * each page its own short transaction, so neither the whole trail nor a
   * database connection is held while the client reads. The view is the
   * checkpoint's: leaves below its size are append-only and never change, so
   * pages read at different times still make up exactly that tree. (An
   * entry's body may be gone by retention; its leaf is then sent without it.)
   */
  async *exportEntries(req: ExportEntriesRequest): AsyncIterable<ExportEntriesResponse> {
    const tenantId = tenantOfCall(req.tenantId);
    const cp = await this.#checkpoint(tenantId, true);
    yield { $typeName: "bulwark.audit.v1.ExportEntriesResponse", item: { case: "checkpoint", value: cp.note } };
    let next = 0;
    while (next < cp.size) {
      const after = next;
      const page = await this.#in(tenantId, async (em) => {
        const rows = await em.execute<{ leaf_index: string; entry_id: string; leaf: Buffer | null }[]>(
          `select l.leaf_index, l.entry_id, e.leaf from leaves l left join entries e on e.tenant_id = l.tenant_id and e.leaf_index = l.leaf_index
           where l.tenant_id = ? and l.leaf_index >= ? and l.leaf_index < ? order by l.leaf_index limit ?`,
          [tenantId, after, cp.size, this.#ctx.settings.exportPageSize],
        );
        const out = [];
        for (const r of rows) {
          const index = Number(r.leaf_index);
          const proof = req.includeProofs ? await this.#tree.inclusionProof(em, tenantId, index, cp.size) : [];
          out.push(create(ExportedEntrySchema, { leafIndex: BigInt(index), entryId: r.entry_id, leaf: r.leaf ?? new Uint8Array(), proof }));
        }
        return out;
      });
      const last = page.at(-1);
      if (last === undefined) break;
      for (const entry of page) yield { $typeName: "bulwark.audit.v1.ExportEntriesResponse", item: { case: "entry", value: entry } };
      next = Number(last.leafIndex) + 1;
    }
  }

  async #proof(fn: () => Promise<Uint8Array[]>): Promise<Uint8Array[]> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof TreeRangeError) throw new ConnectError(err.message, Code.OutOfRange);
      throw err;
    }
  }
}

/** The pseudo-tenant platform-wide events are recorded under (operators read it by naming it). */
export { platformTenant };
