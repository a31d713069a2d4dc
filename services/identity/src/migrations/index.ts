import type { MigrationObject } from "@mikro-orm/core";
import { RuntimeStateMigration20261201, ScheduledRunsMigration20261215 } from "@bulwark/db";
import { EventsMigration20260101 } from "@bulwark/events";
import { Migration20261125100000 } from "./Migration20261125100000.js";
import { Migration20261125110000 } from "./Migration20261125110000.js";
import { Migration20261125120000 } from "./Migration20261125120000.js";
import { Migration20261125130000 } from "./Migration20261125130000.js";
import { Migration20261125140000 } from "./Migration20261125140000.js";
import { Migration20261125150000 } from "./Migration20261125150000.js";
import { Migration20261125160000 } from "./Migration20261125160000.js";
import { Migration20261126091000 } from "./Migration20261126091000.js";
import { Migration20261201090000 } from "./Migration20261201090000.js";
import { Migration20261201100000 } from "./Migration20261201100000.js";
import { Migration20261210100000 } from "./Migration20261210100000.js";
import { Migration20261210110000 } from "./Migration20261210110000.js";
import { Migration20261215120000 } from "./Migration20261215120000.js";
import { Migration20261223100000 } from "./Migration20261223100000.js";

/**
 * Identity's migrations in order: the shared event tables, users and
 * role assignments, roles and invitations, sign-in and sessions, MFA,
 * passkeys, notifications and email changes, operators, the sessions'
 * authentication time, permission epochs, sign-in hardening (pending
 * throttle slots, per-counter rules, expiry indexes), passkey credential ids
 * unique per tenant, operators' second factor and refresh tokens, the
 * scheduler's claims, signing keys encrypted through the keys service.
 */
export const migrations: MigrationObject[] = [
  { name: "EventsMigration20260101", class: EventsMigration20260101 },
  { name: "RuntimeStateMigration20261201", class: RuntimeStateMigration20261201 },
  { name: "Migration20261125100000", class: Migration20261125100000 },
  { name: "Migration20261125110000", class: Migration20261125110000 },
  { name: "Migration20261125120000", class: Migration20261125120000 },
  { name: "Migration20261125130000", class: Migration20261125130000 },
  { name: "Migration20261125140000", class: Migration20261125140000 },
  { name: "Migration20261125150000", class: Migration20261125150000 },
  { name: "Migration20261125160000", class: Migration20261125160000 },
  { name: "Migration20261126091000", class: Migration20261126091000 },
  { name: "Migration20261201090000", class: Migration20261201090000 },
  { name: "Migration20261201100000", class: Migration20261201100000 },
  { name: "Migration20261210100000", class: Migration20261210100000 },
  { name: "Migration20261210110000", class: Migration20261210110000 },
  { name: "ScheduledRunsMigration20261215", class: ScheduledRunsMigration20261215 },
  { name: "Migration20261215120000", class: Migration20261215120000 },
  { name: "Migration20261223100000", class: Migration20261223100000 },
];
