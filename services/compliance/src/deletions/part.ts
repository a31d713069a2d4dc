import type { CompliancePart } from "../part.js";
import { TenantDeletionEntity, TenantDeletionStepEntity } from "./entities.js";
import { Migration20261220110000 } from "./Migration20261220110000.js";

/** The deletion of closed tenants across the mesh. */
export const deletionsPart: CompliancePart = {
  name: "deletions",
  entities: [TenantDeletionEntity, TenantDeletionStepEntity],
  migrations: [{ name: "Migration20261220110000", class: Migration20261220110000 }],
  registrations: () => [],
};
