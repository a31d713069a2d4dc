import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";
import { Migration20261215100000 } from "./Migration20261215100000.js";
import { Migration20261215110000 } from "./Migration20261215110000.js";

/**
 * The keys service's migrations in order: the shared event and runtime
 * tables, key rings and their versions (encryption/), then stored secrets
 * and webhook signing secrets (secrets/, webhooks/).
 */
export const migrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "Migration20261215100000", class: Migration20261215100000 },
  { name: "Migration20261215110000", class: Migration20261215110000 },
];
