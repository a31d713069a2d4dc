import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201, ScheduledRunsMigration20261215 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";
import { Migration20261125000000 } from "./Migration20261125000000.js";
import { Migration20261126090000 } from "./Migration20261126090000.js";
import { Migration20261215090000 } from "./Migration20261215090000.js";
import { Migration20261223090000 } from "./Migration20261223090000.js";

/** Tenancy's migrations in order: the shared event tables, then its own. */
export const migrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "Migration20261125000000", class: Migration20261125000000 },
  { name: "Migration20261126090000", class: Migration20261126090000 },
  { name: "ScheduledRunsMigration20261215", class: ScheduledRunsMigration20261215 },
  { name: "Migration20261215090000", class: Migration20261215090000 },
  { name: "Migration20261223090000", class: Migration20261223090000 },
];
