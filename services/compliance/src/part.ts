import type { EntitySchema, MigrationObject } from "@mikro-orm/core";
import type { CategoryErasure } from "@bulwark/contracts";
import type { EntityManager } from "@bulwark/db";
import type { ConsumerSpec, JobSpec, ServiceRegistration } from "@bulwark/server";
import type { ComplianceContext } from "./context.js";

/**
 * One part of the compliance service, one folder each (requests/,
 * deletions/, posture/, reviews/, retention/, …): its entities and
 * migrations, the proto services it registers, and the consumers and
 * periodic work it runs. module.ts lists the parts; adding one is adding it
 * to that list (its migrations run in the order of the list).
 */
export interface CompliancePart {
  readonly name: string;
  readonly entities: readonly EntitySchema<any, any>[];
  /** The part's migrations, after the shared ones and those of the parts before it. */
  readonly migrations?: readonly MigrationObject[];
  readonly registrations: (ctx: ComplianceContext) => ServiceRegistration[];
  readonly consumers?: (ctx: ComplianceContext) => ConsumerSpec[];
  /** Background work started once dependencies are connected. */
  readonly start?: (ctx: ComplianceContext) => Promise<void>;
  /** Stops what `start` started. */
  readonly stop?: (ctx: ComplianceContext) => Promise<void>;
  /** Periodic jobs for the runtime's Scheduler (one replica per period). */
  readonly jobs?: (ctx: ComplianceContext) => JobSpec[];
  /**
   * Deletes what the part holds about a closed tenant whose grace period
   * ended, inside the tenant deletion's transaction (`em` is scoped to the
   * tenant); returns one entry per category for the deletion's record.
   */
  readonly eraseTenant?: (em: EntityManager, tenantId: string) => Promise<CategoryErasure[]>;
}
