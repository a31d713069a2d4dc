import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AccessReviewClosedSchema,
  AccessReviewCreatedSchema,
  AccessReviewDecidedSchema,
  AccessReviewDecision,
  AccessReviewScope,
  AccessReviewService,
  type CloseAccessReviewRequest,
  type CreateAccessReviewRequest,
  type DecideAccessReviewItemRequest,
  type ListAccessReviewsRequest,
} from "@bulwark/contracts";
import { currentContext, decodeCursor, encodeCursor, failedPrecondition, hasPermission, invalidArgument, newId, notFound, permissionDenied } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { ComplianceContext } from "../context.js";
import { personOf, refuseMorePrivilegedUser } from "../person.js";
import { adminRoleIds } from "../posture/facts.js";
import { asCompliance, callerId, tenantOfCall } from "../posture/mesh.js";
import { itemToProto, loadItems, loadReview, reviewColumns, reviewToProto, type ItemRow, type ReviewRow } from "./store.js";

/** Identity's answers to RevokeRole that settle an item rather than stop the close. */
const refusalCodes: ReadonlySet<Code> = new Set([Code.FailedPrecondition, Code.PermissionDenied, Code.InvalidArgument]);

/**
 * A review never takes away more than its reviewer could in identity:
 * revoking a grant needs identity.roles.assign, revoking Owner also
 * identity.roles.assign_owner (compliance applies it as itself, so the
 * check is made here, on the reviewer's own permissions).
 */
function refuseRevocationBeyondCaller(roleId: string): void {
  const p = currentContext()?.principal;
  const needed = roleId === "system:owner" ? ["identity.roles.assign", "identity.roles.assign_owner"] : ["identity.roles.assign"];
  const missing = needed.filter((perm) => p === undefined || !hasPermission(p, perm));
  if (missing.length > 0) throw permissionDenied(`revoking this grant needs ${missing.join(" and ")}`);
}

/**
 * bulwark.compliance.v1.AccessReviewService: campaigns over a snapshot of
 * the tenant's grants taken from identity, decided by reviewers, and
 * applied to identity when closed. Compliance calls identity as itself in
 * the tenant (the reviewer's own credential may not reach identity's
 * data); who decided and who closed is recorded from the caller.
 */
export class AccessReviewServiceImpl implements ServiceImpl<typeof AccessReviewService> {
  constructor(private readonly ctx: ComplianceContext) {}

  async createAccessReview(req: CreateAccessReviewRequest) {
    const tenantId = tenantOfCall();
    if (req.name.trim() === "") throw invalidArgument("name", "is required");
    const createdBy = callerId();
    const grants = await asCompliance(tenantId, () => this.#grants(req.scope === AccessReviewScope.ADMINS));
    const now = this.ctx.clock();
    const review = await this.#write(async (em) => {
      const row: ReviewRow = { id: newId("arv"), tenant_id: tenantId, name: req.name.trim(), scope: req.scope === AccessReviewScope.ADMINS ? "admins" : "all_members", state: "open", created_by: createdBy, created_at: now, closed_by: null, closed_at: null };
      await em.execute("insert into access_reviews (id, tenant_id, name, scope, state, created_by, created_at) values (?, ?, ?, ?, 'open', ?, ?)", [row.id, tenantId, row.name, row.scope, createdBy, now]);
      const items: ItemRow[] = grants.map((g) => ({ id: newId("ari"), tenant_id: tenantId, review_id: row.id, ...g, decision: null, decided_by: null, decided_at: null, comment: "", outcome: null, outcome_detail: "" }));
      for (let i = 0; i < items.length; i += 500) {
        const chunk = items.slice(i, i + 500);
        await em.execute(
          `insert into access_review_items (id, tenant_id, review_id, user_id, user_display_name, role_id, role_name, admin) values ${chunk.map(() => "(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
          chunk.flatMap((it) => [it.id, tenantId, row.id, it.user_id, it.user_display_name, it.role_id, it.role_name, it.admin]),
        );
      }
      const message = reviewToProto(row, items);
      await this.ctx.deps.events.publish(em, { aggregate: "access_review", verb: "created", aggregateId: row.id, schema: AccessReviewCreatedSchema, payload: { $typeName: AccessReviewCreatedSchema.typeName, review: { ...message, items: [] } } });
      return message;
    });
    return { review };
  }

  async getAccessReview(req: { reviewId: string }) {
    tenantOfCall();
    const review = await this.ctx.deps.db.transaction(async (em) => {
      const r = await loadReview(em, req.reviewId);
      if (r === undefined) throw notFound("access review");
      return reviewToProto(r, await loadItems(em, r.id));
    });
    return { review };
  }

  async listAccessReviews(req: ListAccessReviewsRequest) {
    tenantOfCall();
    const pageSize = req.pageSize === 0 ? 50 : req.pageSize;
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, "access_reviews", "arv_");
    return this.ctx.deps.db.transaction(async (em) => {
      const rows = await em.execute<ReviewRow[]>(
        `select ${reviewColumns} from access_reviews r ${cursor ? "where (r.created_at, r.id) < (?, ?)" : ""} order by r.created_at desc, r.id desc limit ?`,
        cursor ? [cursor.createdAt, cursor.id, pageSize + 1] : [pageSize + 1],
      );
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        reviews: page.map((r) => reviewToProto(r)),
        nextPageToken: rows.length > pageSize && last !== undefined ? encodeCursor({ createdAt: new Date(last.created_at), id: last.id, filter: "access_reviews" }) : "",
      };
    });
  }

  async decideAccessReviewItem(req: DecideAccessReviewItemRequest) {
    const tenantId = tenantOfCall();
    if (req.decision === AccessReviewDecision.UNSPECIFIED) throw invalidArgument("decision", "must be KEEP or REVOKE");
    const reviewer = callerId();
    // The person deciding: an API key decides as its owner, so a key never decides on its owner's grants.
    const person = await personOf(this.ctx.deps, tenantId, reviewer);
    if (req.decision === AccessReviewDecision.REVOKE) {
      const [target] = await this.ctx.deps.db.transaction((em) => em.execute<Pick<ItemRow, "user_id" | "role_id">[]>("select user_id, role_id from access_review_items where id = ? and review_id = ?", [req.itemId, req.reviewId]));
      if (target !== undefined && target.user_id !== person) {
        refuseRevocationBeyondCaller(target.role_id);
        await refuseMorePrivilegedUser(this.ctx.identity, tenantId, target.user_id, "nobody may revoke from a user more privileged than themselves");
      }
    }
    const now = this.ctx.clock();
    const item = await this.#write(async (em) => {
      const r = await loadReview(em, req.reviewId, true);
      if (r === undefined) throw notFound("access review");
      if (r.state !== "open") throw failedPrecondition("the access review is closed");
      const found = (await em.execute<ItemRow[]>("select * from access_review_items where id = ? and review_id = ?", [req.itemId, r.id]))[0];
      if (found === undefined) throw notFound("access review item");
      if (found.user_id === reviewer || found.user_id === person) throw permissionDenied("a reviewer cannot decide on their own grants");
      if (req.decision === AccessReviewDecision.REVOKE) refuseRevocationBeyondCaller(found.role_id);
      const decision = req.decision === AccessReviewDecision.REVOKE ? "revoke" : "keep";
      const updated = (await em.execute<ItemRow[]>("update access_review_items set decision = ?, decided_by = ?, decided_at = ?, comment = ? where id = ? returning *", [decision, reviewer, now, req.comment, found.id]))[0]!;
      const message = itemToProto(updated);
      await this.ctx.deps.events.publish(em, { aggregate: "access_review", verb: "decided", aggregateId: r.id, schema: AccessReviewDecidedSchema, payload: { $typeName: AccessReviewDecidedSchema.typeName, reviewId: r.id, item: message } });
      return message;
    });
    return { item };
  }

  async closeAccessReview(req: CloseAccessReviewRequest) {
    const tenantId = tenantOfCall();
    const closer = callerId();
    // First read without a lock: identity is called outside any transaction.
    const { review, items } = await this.ctx.deps.db.transaction(async (em) => {
      const r = await loadReview(em, req.reviewId);
      if (r === undefined) throw notFound("access review");
      return { review: r, items: await loadItems(em, r.id) };
    });
    if (review.state !== "open") throw failedPrecondition("the access review is already closed");
    const undecided = items.filter((i) => i.decision === null).length;
    if (undecided > 0) throw failedPrecondition(`${undecided} grants are still undecided`);
    // Apply revocations; a grant already gone counts as revoked, so a close retried after identity failed mid-way is harmless.
    const outcomes = new Map<string, { outcome: ItemRow["outcome"]; detail: string }>();
    await asCompliance(tenantId, async () => {
      for (const it of items) {
        if (it.decision === "keep") {
          outcomes.set(it.id, { outcome: "kept", detail: "" });
          continue;
        }
        try {
          await this.ctx.identity.roles.revokeRole({ userId: it.user_id, roleId: it.role_id });
          outcomes.set(it.id, { outcome: "revoked", detail: "" });
        } catch (err) {
          const e = ConnectError.from(err);
          if (e.code === Code.NotFound) outcomes.set(it.id, { outcome: "revoked", detail: "the grant was already gone" });
          else if (refusalCodes.has(e.code)) outcomes.set(it.id, { outcome: "revoke_failed", detail: e.rawMessage.slice(0, 500) });
          else throw new ConnectError("identity is unavailable: nothing was closed, try again", Code.Unavailable, undefined, undefined, err);
        }
      }
    });
    const now = this.ctx.clock();
    const closed = await this.#write(async (em) => {
      const r = await loadReview(em, review.id, true);
      if (r === undefined) throw notFound("access review");
      if (r.state !== "open") throw failedPrecondition("the access review is already closed");
      for (const [id, o] of outcomes) await em.execute("update access_review_items set outcome = ?, outcome_detail = ? where id = ?", [o.outcome, o.detail, id]);
      await em.execute("update access_reviews set state = 'closed', closed_by = ?, closed_at = ? where id = ?", [closer, now, r.id]);
      const after = (await loadReview(em, r.id))!;
      const message = reviewToProto(after, await loadItems(em, r.id));
      await this.ctx.deps.events.publish(em, { aggregate: "access_review", verb: "closed", aggregateId: r.id, schema: AccessReviewClosedSchema, payload: { $typeName: AccessReviewClosedSchema.typeName, review: message } });
      return message;
    });
    return { review: closed };
  }

  /** The tenant's grants from identity: every user and each role, or only administrative grants. */
  async #grants(adminsOnly: boolean): Promise<Pick<ItemRow, "user_id" | "user_display_name" | "role_id" | "role_name" | "admin">[]> {
    const { roles } = await this.ctx.identity.roles.listRoles({});
    const names = new Map(roles.map((r) => [r.id, r.name]));
    const admin = adminRoleIds(roles.map((r) => ({ id: r.id, name: r.name, requiresMfa: r.requiresMfa })));
    const out: Pick<ItemRow, "user_id" | "user_display_name" | "role_id" | "role_name" | "admin">[] = [];
    let pageToken = "";
    do {
      const page = await this.ctx.identity.users.listUsers({ pageSize: 500, pageToken });
      for (const u of page.users) {
        for (const roleId of u.roleIds) {
          const isAdmin = admin.has(roleId);
          if (adminsOnly && !isAdmin) continue;
          out.push({ user_id: u.id, user_display_name: u.displayName, role_id: roleId, role_name: names.get(roleId) ?? roleId, admin: isAdmin });
        }
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return out;
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.ctx.deps.db.transaction(fn);
    this.ctx.deps.relay.nudge();
    return result;
  }
}
