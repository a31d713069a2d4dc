import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AccessReviewDecision,
  AccessReviewItemSchema,
  AccessReviewOutcome,
  AccessReviewSchema,
  AccessReviewScope,
  AccessReviewState,
  type AccessReview,
  type AccessReviewItem,
} from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";

/** An access_reviews row. */
export interface ReviewRow {
  id: string;
  tenant_id: string;
  name: string;
  scope: "all_members" | "admins";
  state: "open" | "closed";
  created_by: string;
  created_at: Date;
  closed_by: string | null;
  closed_at: Date | null;
  item_count?: number;
  decided_count?: number;
  revoke_count?: number;
}

/** An access_review_items row. */
export interface ItemRow {
  id: string;
  tenant_id: string;
  review_id: string;
  user_id: string;
  user_display_name: string;
  role_id: string;
  role_name: string;
  admin: boolean;
  decision: "keep" | "revoke" | null;
  decided_by: string | null;
  decided_at: Date | null;
  comment: string;
  outcome: "kept" | "revoked" | "revoke_failed" | null;
  outcome_detail: string;
}

/** The columns of a review with its counts. */
export const reviewColumns = `r.*,
  (select count(*)::int from access_review_items i where i.review_id = r.id) as item_count,
  (select count(*)::int from access_review_items i where i.review_id = r.id and i.decision is not null) as decided_count,
  (select count(*)::int from access_review_items i where i.review_id = r.id and i.decision = 'revoke') as revoke_count`;

export const scopeOf = { all_members: AccessReviewScope.ALL_MEMBERS, admins: AccessReviewScope.ADMINS } as const;
const decisionOf = { keep: AccessReviewDecision.KEEP, revoke: AccessReviewDecision.REVOKE } as const;
const outcomeOf = { kept: AccessReviewOutcome.KEPT, revoked: AccessReviewOutcome.REVOKED, revoke_failed: AccessReviewOutcome.REVOKE_FAILED } as const;

/** The wire form of an item. */
export function itemToProto(i: ItemRow): AccessReviewItem {
  return create(AccessReviewItemSchema, {
    id: i.id,
    userId: i.user_id,
    userDisplayName: i.user_display_name,
    roleId: i.role_id,
    roleName: i.role_name,
    admin: i.admin,
    decision: i.decision === null ? AccessReviewDecision.UNSPECIFIED : decisionOf[i.decision],
    decidedBy: i.decided_by ?? "",
    ...(i.decided_at !== null ? { decideTime: timestampFromDate(new Date(i.decided_at)) } : {}),
    comment: i.comment,
    outcome: i.outcome === null ? AccessReviewOutcome.UNSPECIFIED : outcomeOf[i.outcome],
    outcomeDetail: i.outcome_detail,
  });
}

/** The wire form of a review, with `items` when given. */
export function reviewToProto(r: ReviewRow, items?: readonly ItemRow[]): AccessReview {
  return create(AccessReviewSchema, {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    scope: scopeOf[r.scope],
    state: r.state === "open" ? AccessReviewState.OPEN : AccessReviewState.CLOSED,
    createdBy: r.created_by,
    createTime: timestampFromDate(new Date(r.created_at)),
    closedBy: r.closed_by ?? "",
    ...(r.closed_at !== null ? { closeTime: timestampFromDate(new Date(r.closed_at)) } : {}),
    itemCount: r.item_count ?? items?.length ?? 0,
    decidedCount: r.decided_count ?? items?.filter((i) => i.decision !== null).length ?? 0,
    revokeCount: r.revoke_count ?? items?.filter((i) => i.decision === "revoke").length ?? 0,
    items: items?.map(itemToProto) ?? [],
  });
}

/** One review with its counts, or undefined (another tenant's is invisible). */
export async function loadReview(em: EntityManager, id: string, lock = false): Promise<ReviewRow | undefined> {
  if (lock) await em.execute("select id from access_reviews where id = ? for update", [id]);
  return (await em.execute<ReviewRow[]>(`select ${reviewColumns} from access_reviews r where r.id = ?`, [id]))[0];
}

/** A review's items, by user and role. */
export async function loadItems(em: EntityManager, reviewId: string): Promise<ItemRow[]> {
  return em.execute<ItemRow[]>("select * from access_review_items where review_id = ? order by user_id, role_id", [reviewId]);
}

/**
 * When each user's grants were last decided in a closed campaign: user →
 * role → close time. The posture control "admins reviewed this quarter"
 * reads it.
 */
export async function lastReviewedGrants(em: EntityManager): Promise<Map<string, Map<string, Date>>> {
  const rows = await em.execute<{ user_id: string; role_id: string; closed_at: Date }[]>(
    `select i.user_id, i.role_id, max(r.closed_at) as closed_at
       from access_review_items i join access_reviews r on r.id = i.review_id
      where r.state = 'closed' and i.outcome is not null
      group by i.user_id, i.role_id`,
  );
  const out = new Map<string, Map<string, Date>>();
  for (const row of rows) {
    let m = out.get(row.user_id);
    if (m === undefined) out.set(row.user_id, (m = new Map()));
    m.set(row.role_id, new Date(row.closed_at));
  }
  return out;
}
