import type { EntitySchema } from "@mikro-orm/core";
import type { ConsumerSpec, JobSpec, ServiceRegistration } from "@bulwark/server";
import type { AuditContext } from "./context.js";

/**
 * One part of the audit service, one folder each (log/ for the read RPCs,
 * ingest/ for the consumers, tree/ for the Merkle log and its checkpoints,
 * participant/ for compliance's data-subject participant): its entities,
 * the proto services it registers, its consumers and periodic jobs.
 * module.ts lists the parts; adding one is adding it to that list.
 */
export interface AuditPart {
  readonly name: string;
  readonly entities: readonly EntitySchema<any, any>[];
  readonly registrations: (ctx: AuditContext) => ServiceRegistration[];
  readonly consumers?: (ctx: AuditContext) => ConsumerSpec[];
  /** Background work started once dependencies are connected. */
  readonly start?: (ctx: AuditContext) => Promise<void>;
  /** Stops what `start` started. */
  readonly stop?: (ctx: AuditContext) => Promise<void>;
  /** Periodic jobs for the runtime's Scheduler (one replica per period). */
  readonly jobs?: (ctx: AuditContext) => JobSpec[];
}
