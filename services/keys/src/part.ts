import type { EntitySchema } from "@mikro-orm/core";
import type { CredentialResolver } from "@bulwark/core";
import type { ConsumerSpec, JobSpec, ServiceRegistration } from "@bulwark/server";
import type { KeysContext } from "./context.js";

/**
 * One part of the keys service, one folder each (encryption/, secrets/,
 * webhooks/, …): its entities, the proto services it registers, and the
 * consumers, credential resolvers and periodic work it runs. module.ts lists
 * the parts; adding one is adding it to that list.
 */
export interface KeysPart {
  readonly name: string;
  readonly entities: readonly EntitySchema<any, any>[];
  readonly registrations: (ctx: KeysContext) => ServiceRegistration[];
  readonly consumers?: (ctx: KeysContext) => ConsumerSpec[];
  readonly resolvers?: (ctx: KeysContext) => CredentialResolver[];
  /** Background work started once dependencies are connected (periodic jobs). */
  readonly start?: (ctx: KeysContext) => Promise<void>;
  /** Stops what `start` started. */
  readonly stop?: (ctx: KeysContext) => Promise<void>;
  /** Periodic jobs for the runtime's Scheduler (one replica per period). */
  readonly jobs?: (ctx: KeysContext) => JobSpec[];
}
