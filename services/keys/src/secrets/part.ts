import { file_bulwark_keys_v1_secret_service, SecretService } from "@bulwark/contracts";
import type { KeysContext } from "../context.js";
import { PeriodicJob } from "../jobs.js";
import type { KeysPart } from "../part.js";
import { registration } from "../registration.js";
import { SecretEntity, SecretVersionEntity } from "./entities.js";
import { remindDueSecrets } from "./reminders.js";
import { SecretServiceImpl } from "./secret-service.js";

const jobs = new WeakMap<KeysContext, PeriodicJob>();

/** The periodic rotation-reminder job of a started service (tests run it with runOnce). */
export function reminderJob(ctx: KeysContext): PeriodicJob {
  let job = jobs.get(ctx);
  if (job === undefined) {
    const logger = ctx.deps.logger.child({ part: "secrets" });
    job = new PeriodicJob({ name: "secret_reminders", intervalMs: ctx.deps.config.KEYS_JOB_INTERVAL_MS, db: ctx.deps.db, logger, run: async (em) => void (await remindDueSecrets(em, ctx.deps.events, logger, new Date())), afterRun: () => ctx.deps.relay.nudge() });
    jobs.set(ctx, job);
  }
  return job;
}

/** The credential vault: SecretService and its rotation reminders. */
export const secretsPart: KeysPart = {
  name: "secrets",
  entities: [SecretEntity, SecretVersionEntity],
  registrations: (ctx) => [registration(SecretService, file_bulwark_keys_v1_secret_service, new SecretServiceImpl({ db: ctx.deps.db, events: ctx.deps.events, envelope: ctx.envelope, afterCommit: () => ctx.deps.relay.nudge() }))],
  start: async (ctx) => reminderJob(ctx).start(),
  stop: async (ctx) => reminderJob(ctx).stop(),
};
