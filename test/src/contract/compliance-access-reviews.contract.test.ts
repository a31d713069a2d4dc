/**
 * Contract of bulwark.compliance.v1.AccessReviewService against real
 * tenancy, keys, identity and compliance servers: a campaign snapshots the
 * tenant's grants from identity (every member's roles, or admins only),
 * reviewers decide each grant (never their own), closing applies the
 * revocations through identity's RoleService and keeps the campaign as
 * evidence (events on compliance's stream), and every documented error.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { AccessReviewDecision, AccessReviewOutcome, AccessReviewScope, AccessReviewState } from "@bulwark/contracts";
import { refusedWith } from "./support-assert.js";
import { createUser, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { complianceAs, complianceEventTypes, compliancePrincipal, reviewManager, startPostureMesh, type PostureMesh } from "./support-compliance-posture.js";
import { operatorIn } from "./support-identity.js";

describe("AccessReviewService", () => {
  let mesh: PostureMesh;
  let tenant: TestTenant;

  before(async () => {
    mesh = await startPostureMesh();
    tenant = await tenantWithSlug(mesh);
  });
  after(async () => {
    await mesh?.stop();
  });

  const manager = () => complianceAs(mesh, compliancePrincipal(tenant.id, reviewManager)).reviews;

  test("a revocation in an access review removes the role in identity, and the closed campaign is evidence", async () => {
    const owner = await createUser(mesh, tenant, { roles: ["system:owner"] });
    const leaver = await createUser(mesh, tenant, { roles: ["system:admin", "system:developer"] });
    const stayer = await createUser(mesh, tenant, { roles: ["system:member"] });
    const { review } = await manager().createAccessReview({ name: "Q4 all members", scope: AccessReviewScope.ALL_MEMBERS });
    assert.ok(review !== undefined);
    assert.equal(review.state, AccessReviewState.OPEN);
    assert.equal(review.tenantId, tenant.id);
    const grants = review.items.map((i) => `${i.userId}:${i.roleId}`);
    for (const g of [`${owner.id}:system:owner`, `${leaver.id}:system:admin`, `${leaver.id}:system:developer`, `${stayer.id}:system:member`]) assert.ok(grants.includes(g), g);
    assert.equal(review.items.find((i) => i.roleId === "system:admin")?.admin, true);
    assert.equal(review.items.find((i) => i.roleId === "system:member")?.admin, false);

    const reviewer = compliancePrincipal(tenant.id, reviewManager);
    const as = complianceAs(mesh, reviewer).reviews;
    for (const item of review.items) {
      const revoke = item.userId === leaver.id && item.roleId === "system:admin";
      const { item: decided } = await as.decideAccessReviewItem({ reviewId: review.id, itemId: item.id, decision: revoke ? AccessReviewDecision.REVOKE : AccessReviewDecision.KEEP, comment: revoke ? "left the team" : "" });
      assert.equal(decided?.decidedBy, reviewer.id);
      assert.ok(decided?.decideTime !== undefined);
    }
    const { review: closed } = await manager().closeAccessReview({ reviewId: review.id });
    assert.equal(closed?.state, AccessReviewState.CLOSED);
    assert.ok(closed?.closeTime !== undefined);
    assert.equal(closed?.revokeCount, 1);
    const revoked = closed!.items.find((i) => i.userId === leaver.id && i.roleId === "system:admin")!;
    assert.equal(revoked.outcome, AccessReviewOutcome.REVOKED);
    assert.equal(revoked.comment, "left the team");
    assert.ok(closed!.items.filter((i) => i !== revoked).every((i) => i.outcome === AccessReviewOutcome.KEPT));

    const { user } = await operatorIn(mesh, tenant.id).users.getUser({ userId: leaver.id });
    assert.deepEqual(user?.roleIds.sort(), ["system:developer"], "identity took the admin role away");
    const types = await complianceEventTypes(mesh, tenant.id);
    assert.ok(types.includes("access_review.created") && types.includes("access_review.decided") && types.includes("access_review.closed"), types.join());

    // Closed for good.
    await refusedWith(manager().closeAccessReview({ reviewId: review.id }), Code.FailedPrecondition, "closed");
    await refusedWith(as.decideAccessReviewItem({ reviewId: review.id, itemId: revoked.id, decision: AccessReviewDecision.KEEP }), Code.FailedPrecondition, "closed");
    const got = (await manager().getAccessReview({ reviewId: review.id })).review!;
    assert.equal(got.items.length, review.items.length);
    assert.equal(got.decidedCount, review.items.length);
  });

  test("an admins-only campaign holds administrative grants only; identity refusing to revoke the last owner is recorded", async () => {
    const t = await tenantWithSlug(mesh);
    const owner = await createUser(mesh, t, { roles: ["system:owner"] });
    await createUser(mesh, t, { roles: ["system:member"] });
    const reviews = complianceAs(mesh, compliancePrincipal(t.id, reviewManager)).reviews;
    const { review } = await reviews.createAccessReview({ name: "admins", scope: AccessReviewScope.ADMINS });
    assert.deepEqual(review!.items.map((i) => `${i.userId}:${i.roleId}`), [`${owner.id}:system:owner`]);
    await reviews.decideAccessReviewItem({ reviewId: review!.id, itemId: review!.items[0]!.id, decision: AccessReviewDecision.REVOKE });
    const { review: closed } = await reviews.closeAccessReview({ reviewId: review!.id });
    const item = closed!.items[0]!;
    assert.equal(item.outcome, AccessReviewOutcome.REVOKE_FAILED);
    assert.match(item.outcomeDetail, /owner/i);
    const { user } = await operatorIn(mesh, t.id).users.getUser({ userId: owner.id });
    assert.deepEqual(user?.roleIds, ["system:owner"]);
  });

  test("ListAccessReviews pages newest first without items", async () => {
    const t = await tenantWithSlug(mesh);
    await createUser(mesh, t, { roles: ["system:member"] });
    const reviews = complianceAs(mesh, compliancePrincipal(t.id, reviewManager)).reviews;
    const ids: string[] = [];
    for (const name of ["one", "two", "three"]) ids.push((await reviews.createAccessReview({ name, scope: AccessReviewScope.ALL_MEMBERS })).review!.id);
    const first = await reviews.listAccessReviews({ pageSize: 2 });
    assert.deepEqual(first.reviews.map((r) => r.id), [ids[2], ids[1]]);
    assert.ok(first.reviews.every((r) => r.items.length === 0 && r.itemCount === 1));
    const second = await reviews.listAccessReviews({ pageSize: 2, pageToken: first.nextPageToken });
    assert.deepEqual(second.reviews.map((r) => r.id), [ids[0]]);
    assert.equal(second.nextPageToken, "");
    await refusedWith(reviews.listAccessReviews({ pageToken: "not-a-token" }), Code.InvalidArgument, "page_token");
  });

  test("documented errors: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED", async () => {
    const self = await createUser(mesh, tenant, { roles: ["system:admin"] });
    const { review } = await manager().createAccessReview({ name: "errors", scope: AccessReviewScope.ADMINS });
    const own = review!.items.find((i) => i.userId === self.id)!;
    await refusedWith(manager().createAccessReview({ name: "x", scope: AccessReviewScope.UNSPECIFIED }), Code.InvalidArgument, "scope");
    await refusedWith(manager().createAccessReview({ name: "", scope: AccessReviewScope.ADMINS }), Code.InvalidArgument, "name");
    await refusedWith(manager().getAccessReview({ reviewId: "nope" }), Code.InvalidArgument, "review_id");
    await refusedWith(manager().getAccessReview({ reviewId: "arv_unknown" }), Code.NotFound);
    await refusedWith(manager().decideAccessReviewItem({ reviewId: review!.id, itemId: "ari_unknown", decision: AccessReviewDecision.KEEP }), Code.NotFound);
    await refusedWith(manager().decideAccessReviewItem({ reviewId: review!.id, itemId: own.id, decision: AccessReviewDecision.UNSPECIFIED }), Code.InvalidArgument, "decision");
    await refusedWith(manager().closeAccessReview({ reviewId: review!.id }), Code.FailedPrecondition, "undecided");
    // Nobody decides on their own grants.
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, reviewManager, self.id)).reviews.decideAccessReviewItem({ reviewId: review!.id, itemId: own.id, decision: AccessReviewDecision.KEEP }), Code.PermissionDenied, "own");
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, ["compliance.access_reviews.read"])).reviews.createAccessReview({ name: "x", scope: AccessReviewScope.ADMINS }), Code.PermissionDenied);
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, ["compliance.access_reviews.read"])).reviews.decideAccessReviewItem({ reviewId: review!.id, itemId: own.id, decision: AccessReviewDecision.KEEP }), Code.PermissionDenied);
    await refusedWith(complianceAs(mesh, undefined).reviews.listAccessReviews({}), Code.Unauthenticated);
    // A review takes away no more than its reviewer could in identity.
    const owner = await createUser(mesh, tenant, { roles: ["system:owner"] });
    const { review: all } = await manager().createAccessReview({ name: "beyond", scope: AccessReviewScope.ADMINS });
    const ownerGrant = all!.items.find((i) => i.userId === owner.id && i.roleId === "system:owner")!;
    const adminGrant = all!.items.find((i) => i.userId === self.id)!;
    const plainReviewer = compliancePrincipal(tenant.id, ["compliance.access_reviews.decide"]);
    await refusedWith(complianceAs(mesh, plainReviewer).reviews.decideAccessReviewItem({ reviewId: all!.id, itemId: adminGrant.id, decision: AccessReviewDecision.REVOKE }), Code.PermissionDenied, "identity.roles.assign");
    await refusedWith(complianceAs(mesh, compliancePrincipal(tenant.id, ["compliance.access_reviews.decide", "identity.roles.assign"])).reviews.decideAccessReviewItem({ reviewId: all!.id, itemId: ownerGrant.id, decision: AccessReviewDecision.REVOKE }), Code.PermissionDenied, "assign_owner");
    assert.equal((await complianceAs(mesh, plainReviewer).reviews.decideAccessReviewItem({ reviewId: all!.id, itemId: ownerGrant.id, decision: AccessReviewDecision.KEEP })).item?.decision, AccessReviewDecision.KEEP);
    // Another tenant's campaign does not exist for this one.
    const other = await tenantWithSlug(mesh);
    await refusedWith(complianceAs(mesh, compliancePrincipal(other.id, reviewManager)).reviews.getAccessReview({ reviewId: review!.id }), Code.NotFound);
  });
  test("CloseAccessReview answers UNAVAILABLE while identity is down and closes nothing (runs last: it stops identity)", async () => {
    const t = await tenantWithSlug(mesh);
    await createUser(mesh, t, { roles: ["system:owner"] });
    const member = await createUser(mesh, t, { roles: ["system:developer"] });
    const reviews = complianceAs(mesh, compliancePrincipal(t.id, reviewManager)).reviews;
    const { review } = await reviews.createAccessReview({ name: "outage", scope: AccessReviewScope.ALL_MEMBERS });
    for (const item of review!.items) await reviews.decideAccessReviewItem({ reviewId: review!.id, itemId: item.id, decision: item.userId === member.id ? AccessReviewDecision.REVOKE : AccessReviewDecision.KEEP });
    await mesh.identity.running.stop();
    await refusedWith(reviews.closeAccessReview({ reviewId: review!.id }), Code.Unavailable, "identity");
    await refusedWith(reviews.createAccessReview({ name: "x", scope: AccessReviewScope.ADMINS }), Code.Unavailable);
    const after = (await reviews.getAccessReview({ reviewId: review!.id })).review!;
    assert.equal(after.state, AccessReviewState.OPEN);
    assert.ok(after.items.every((i) => i.outcome === AccessReviewOutcome.UNSPECIFIED));
  });
});
