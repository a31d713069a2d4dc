import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201, ScheduledRunsMigration20261215 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";
import { Migration20261220100000 } from "./Migration20261220100000.js";
import { Migration20261221100000 } from "./Migration20261221100000.js";
import { Migration20261222100000 } from "./Migration20261222100000.js";
import { Migration20261223100000 } from "./Migration20261223100000.js";

/**
 * The audit service's migrations in order: the shared event and runtime
 * tables (outbox, inbox for the consumers' de-duplication, parked events),
 * the scheduler's runs, then the trail itself (entries, tree, checkpoints,
 * keys; append-only), monitoring, the retention role's deletes for a
 * tenant's deletion, and the copy of compliance's retention rules and holds.
 */
export const migrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "ScheduledRunsMigration20261215", class: ScheduledRunsMigration20261215 },
  { name: "Migration20261220100000", class: Migration20261220100000 },
  { name: "Migration20261221100000", class: Migration20261221100000 },
  { name: "Migration20261222100000", class: Migration20261222100000 },
  { name: "Migration20261223100000", class: Migration20261223100000 },
];
