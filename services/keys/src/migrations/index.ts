import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201, ScheduledRunsMigration20261215 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";
import { apiKeysMigrations } from "../apikeys/part.js";

/**
 * Keys' migrations in order: the shared event tables, runtime state and scheduled runs,
 * then each part's own (API keys).
 */
export const migrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "ScheduledRunsMigration20261215", class: ScheduledRunsMigration20261215 },
  ...apiKeysMigrations,
];
