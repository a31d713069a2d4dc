import type { CompliancePart } from "../part.js";
import { DataSubjectRequestEntity, DataSubjectStepEntity, LegalHoldEntity } from "./entities.js";
import { Migration20261220100000 } from "./Migration20261220100000.js";

/** Data-subject requests, their saga across the mesh, and legal holds. */
export const requestsPart: CompliancePart = {
  name: "requests",
  entities: [DataSubjectRequestEntity, DataSubjectStepEntity, LegalHoldEntity],
  migrations: [{ name: "Migration20261220100000", class: Migration20261220100000 }],
  registrations: () => [],
};
