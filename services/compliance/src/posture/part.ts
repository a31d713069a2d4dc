import { file_bulwark_compliance_v1_posture_service, ListTenantsRequestSchema, PostureService, TenantState } from "@bulwark/contracts";
import { create } from "@bufbuild/protobuf";
import { describeError } from "@bulwark/core";
import type { JobSpec } from "@bulwark/server";
import type { ComplianceContext } from "../context.js";
import type { CompliancePart } from "../part.js";
import { registration } from "../registration.js";
import { auditCheckpoints, type AuditCheckpointSource } from "./checkpoint.js";
import { PostureEvaluator } from "./evaluator.js";
import { asCompliance, evidenceClients } from "./mesh.js";
import { Migration20261221100000 } from "./Migration20261221100000.js";
import { PostureServiceImpl } from "./posture-service.js";

/** A posture run that left some tenant unevaluated: it fails, so the scheduler retries it soon. */
export class PostureRunError extends Error {
  override name = "PostureRunError";
}

const evaluators = new WeakMap<ComplianceContext, PostureEvaluator>();

/** The posture evaluator of one started service; its reports carry audit's checkpoint unless `checkpoints` says otherwise. */
export function postureEvaluator(ctx: ComplianceContext, checkpoints?: AuditCheckpointSource): PostureEvaluator {
  let e = evaluators.get(ctx);
  if (e === undefined) {
    const logger = ctx.deps.logger.child({ part: "posture" });
    e = new PostureEvaluator(ctx, checkpoints ?? auditCheckpoints(ctx.deps, logger), logger);
    evaluators.set(ctx, e);
  }
  return e;
}

/**
 * The continuous evaluation: once an hour, one replica evaluates every
 * active tenant in turn (listing them from tenancy in compliance's platform
 * scope, then acting inside each). A tenant whose sources are down keeps
 * its previous report. A run that could not list the tenants (tenancy not
 * up yet, as at a mesh's start) or left some tenant unevaluated fails, and
 * the scheduler tries it again after a minute (doubling) instead of
 * waiting for the next hour.
 */
export function postureJob(ctx: ComplianceContext): JobSpec {
  return {
    name: "posture_evaluation",
    everyMs: 3_600_000,
    timeoutMs: 30 * 60_000,
    retryFailedAfterMs: 60_000,
    runAsPlatform: "compliance evaluates the security posture of every active tenant",
    async run(job) {
      const evaluator = postureEvaluator(ctx);
      const { tenancy } = evidenceClients(ctx.deps);
      let evaluated = 0;
      let failed = 0;
      let pageToken = "";
      do {
        const page = await tenancy.listTenants(create(ListTenantsRequestSchema, { pageSize: 500, pageToken, state: TenantState.ACTIVE }));
        for (const t of page.tenants) {
          if (job.signal.aborted) return { evaluated, failed };
          try {
            await asCompliance(t.id, () => evaluator.evaluate(t.id));
            evaluated++;
          } catch (err) {
            failed++;
            job.logger.warn({ tenantId: t.id, err: describeError(err) }, "posture not evaluated for a tenant; the run fails and is retried soon");
          }
        }
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      if (failed > 0) throw new PostureRunError(`posture not evaluated for ${failed} of ${evaluated + failed} tenants`);
      return { evaluated, failed };
    },
  };
}

/** Posture controls (PostureService), their hourly evaluation and the auditor's report. */
export const posturePart: CompliancePart = {
  name: "posture",
  entities: [],
  migrations: [{ name: "Migration20261221100000", class: Migration20261221100000 }],
  registrations: (ctx) => [registration(PostureService, file_bulwark_compliance_v1_posture_service, new PostureServiceImpl(postureEvaluator(ctx)))],
  jobs: (ctx) => [postureJob(ctx)],
};
