import { AccessReviewService, file_bulwark_compliance_v1_access_review_service } from "@bulwark/contracts";
import type { CompliancePart } from "../part.js";
import { registration } from "../registration.js";
import { AccessReviewServiceImpl } from "./access-review-service.js";
import { Migration20261221110000 } from "./Migration20261221110000.js";

/** Access review campaigns (AccessReviewService): snapshot, decide, apply through identity, keep as evidence. */
export const reviewsPart: CompliancePart = {
  name: "reviews",
  entities: [],
  migrations: [{ name: "Migration20261221110000", class: Migration20261221110000 }],
  registrations: (ctx) => [registration(AccessReviewService, file_bulwark_compliance_v1_access_review_service, new AccessReviewServiceImpl(ctx))],
};
