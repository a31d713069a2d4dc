import { EncryptionService, file_bulwark_keys_v1_encryption_service } from "@bulwark/contracts";
import type { KeysContext } from "../context.js";
import { PeriodicJob } from "../jobs.js";
import type { KeysPart } from "../part.js";
import { registration } from "../registration.js";
import { EncryptionServiceImpl } from "./encryption-service.js";
import { KeyRingEntity, KeyVersionEntity } from "./entities.js";
import { rotateDueRings } from "./rotation.js";

const jobs = new WeakMap<KeysContext, PeriodicJob>();

/** The periodic rotation job of a started service (tests run it with runOnce). */
export function rotationJob(ctx: KeysContext): PeriodicJob {
  let job = jobs.get(ctx);
  if (job === undefined) {
    const logger = ctx.deps.logger.child({ part: "encryption" });
    job = new PeriodicJob({ name: "key_rotation", intervalMs: ctx.deps.config.KEYS_JOB_INTERVAL_MS, db: ctx.deps.db, logger, run: async (em) => void (await rotateDueRings(em, ctx.rings, ctx.periods, logger, new Date())), afterRun: () => ctx.deps.relay.nudge() });
    jobs.set(ctx, job);
  }
  return job;
}

/** Envelope encryption: key rings, EncryptionService, the periodic rotation. */
export const encryptionPart: KeysPart = {
  name: "encryption",
  entities: [KeyRingEntity, KeyVersionEntity],
  registrations: (ctx) => [registration(EncryptionService, file_bulwark_keys_v1_encryption_service, new EncryptionServiceImpl({ envelope: ctx.envelope, rings: ctx.rings, periods: ctx.periods }))],
  start: async (ctx) => rotationJob(ctx).start(),
  stop: async (ctx) => rotationJob(ctx).stop(),
};
