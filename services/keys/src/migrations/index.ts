import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201, ScheduledRunsMigration20261215 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";
import { Migration20261215100000 } from "./Migration20261215100000.js";
import { Migration20261215110000 } from "./Migration20261215110000.js";
import { apiKeysMigrations } from "../apikeys/part.js";

/**
 * The keys service's migrations in order: the shared event and runtime
 * tables, key rings and their versions (encryption/), then stored secrets
 * and webhook signing secrets (secrets/, webhooks/), the scheduler's runs,
 * and API keys (apikeys/).
 */
export const migrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "Migration20261215100000", class: Migration20261215100000 },
  { name: "Migration20261215110000", class: Migration20261215110000 },
  { name: "ScheduledRunsMigration20261215", class: ScheduledRunsMigration20261215 },
  ...apiKeysMigrations,
];
