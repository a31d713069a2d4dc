import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201, ScheduledRunsMigration20261215 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";

/**
 * The shared tables every service has (outbox and inbox, runtime state, the
 * scheduler's runs). Each part's own migrations follow, in the order of the
 * parts in module.ts.
 */
export const sharedMigrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "ScheduledRunsMigration20261215", class: ScheduledRunsMigration20261215 },
];
