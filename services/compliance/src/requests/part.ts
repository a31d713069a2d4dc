import { DataSubjectRequestService, file_bulwark_compliance_v1_data_subject_request_service } from "@bulwark/contracts";
import { participantRegistration } from "@bulwark/server";
import type { ComplianceContext } from "../context.js";
import type { CompliancePart } from "../part.js";
import { registration } from "../registration.js";
import { SagaWorker } from "../saga/worker.js";
import { DataSubjectRequestEntity, DataSubjectStepEntity, LegalHoldEntity } from "./entities.js";
import { expireExports } from "./expiry.js";
import { Migration20261220100000 } from "./Migration20261220100000.js";
import { Migration20261223100000 } from "./Migration20261223100000.js";
import { ComplianceParticipantImpl } from "./participant-service.js";
import { DataSubjectRequestServiceImpl } from "./request-service.js";

const workers = new WeakMap<ComplianceContext, SagaWorker>();

/** The saga worker of a started service (tests run a round with runOnce). */
export function sagaWorker(ctx: ComplianceContext): SagaWorker {
  let w = workers.get(ctx);
  if (w === undefined) {
    w = new SagaWorker({ ctx, local: new ComplianceParticipantImpl(ctx.deps.db, () => ctx.parts) });
    workers.set(ctx, w);
  }
  return w;
}

/** The job that deletes expired export bundles. */
export const exportExpiryJob = "export_expiry";

/** Data-subject requests, their saga across the mesh, legal holds, and compliance's own participant. */
export const requestsPart: CompliancePart = {
  name: "requests",
  entities: [DataSubjectRequestEntity, DataSubjectStepEntity, LegalHoldEntity],
  migrations: [
    { name: "Migration20261220100000", class: Migration20261220100000 },
    { name: "Migration20261223100000", class: Migration20261223100000 },
  ],
  registrations: (ctx) => [
    registration(DataSubjectRequestService, file_bulwark_compliance_v1_data_subject_request_service, new DataSubjectRequestServiceImpl(ctx, sagaWorker(ctx))),
    participantRegistration(new ComplianceParticipantImpl(ctx.deps.db, () => ctx.parts)),
  ],
  start: async (ctx) => sagaWorker(ctx).start(),
  stop: async (ctx) => sagaWorker(ctx).stop(),
  jobs: (ctx) => [
    {
      name: exportExpiryJob,
      everyMs: 3_600_000,
      timeoutMs: 120_000,
      runAsPlatform: "deleting expired data-subject export bundles",
      run: async () => ({ deleted: await expireExports(ctx) }),
    },
  ],
};
