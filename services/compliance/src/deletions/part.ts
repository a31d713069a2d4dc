import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { file_bulwark_compliance_v1_tenant_deletion_service, TenantClosingSchema, TenantDeletionService } from "@bulwark/contracts";
import { newId } from "@bulwark/core";
import { BackgroundConsumer, streamOf, type ConsumerSpec } from "@bulwark/server";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ComplianceContext } from "../context.js";
import type { CompliancePart } from "../part.js";
import { registration } from "../registration.js";
import { TenantDeletionServiceImpl } from "./deletion-service.js";
import { TenantDeletionEntity, TenantDeletionStepEntity } from "./entities.js";
import { Migration20261220110000 } from "./Migration20261220110000.js";
import { publishDeletion, type DeletionRow } from "./store.js";

/** The durable consumer of tenancy's tenant events. */
export const tenantLifecycleDurable = "compliance_tenant_lifecycle";

/**
 * Follows tenancy's tenant lifecycle: `tenant.closing` schedules the
 * tenant's deletion at its purge_time (the end of its 30-day grace period),
 * `tenant.reactivated` cancels a scheduled one. The saga worker starts the
 * deletion when it is due.
 */
function lifecycleConsumer(ctx: ComplianceContext): ConsumerSpec {
  const prefix = ctx.deps.config.EVENTS_SUBJECT_PREFIX;
  return {
    stream: streamOf(prefix, "tenancy").name,
    source: "tenancy",
    durable: tenantLifecycleDurable,
    // One filter subject (NATS servers before 2.10 take only one); `relevant` keeps the two verbs.
    filterSubjects: [`${prefix}.tenancy.tenant.>`],
    relevant: (event) => event.envelope.type.endsWith(".tenant.closing") || event.envelope.type.endsWith(".tenant.reactivated"),
    maxDeliver: 20,
    backoffMs: [500, 2_000, 10_000, 60_000],
    async handle(event, em) {
      const tenantId = event.envelope.aggregateId;
      const now = ctx.clock();
      if (event.envelope.type.endsWith(".closing")) {
        const closing = event.envelope.payload === undefined ? undefined : anyUnpack(event.envelope.payload, TenantClosingSchema);
        const t = closing?.tenant;
        const closedAt = t?.closeTime !== undefined ? timestampDate(t.closeTime) : now;
        const purgeAt = t?.purgeTime !== undefined ? timestampDate(t.purgeTime) : new Date(closedAt.getTime() + 30 * 86_400_000);
        const rows = await em.execute<DeletionRow[]>(
          "insert into tenant_deletions (id, tenant_id, state, closed_at, purge_at, updated_at) values (?, ?, 'scheduled', ?, ?, ?) on conflict (tenant_id) where state in ('scheduled', 'in_progress') do nothing returning *",
          [newId("tdl"), tenantId, closedAt, purgeAt, now],
        );
        for (const d of rows) await publishDeletion(em, ctx.deps.events, "scheduled", d);
      } else {
        const rows = await em.execute<DeletionRow[]>("update tenant_deletions set state = 'cancelled', completed_at = ?, updated_at = ? where tenant_id = ? and state = 'scheduled' returning *", [now, now, tenantId]);
        for (const d of rows) await publishDeletion(em, ctx.deps.events, "cancelled", d);
      }
    },
  };
}

const consumers = new WeakMap<ComplianceContext, BackgroundConsumer>();

/** The lifecycle consumer of a started service (started in the background: tenancy's stream may not exist yet). */
export function lifecycleConsumerOf(ctx: ComplianceContext): BackgroundConsumer {
  let c = consumers.get(ctx);
  if (c === undefined) {
    c = new BackgroundConsumer(ctx.deps, lifecycleConsumer(ctx));
    consumers.set(ctx, c);
  }
  return c;
}

/** The deletion of closed tenants across the mesh: the lifecycle consumer and TenantDeletionService. */
export const deletionsPart: CompliancePart = {
  name: "deletions",
  entities: [TenantDeletionEntity, TenantDeletionStepEntity],
  migrations: [{ name: "Migration20261220110000", class: Migration20261220110000 }],
  registrations: (ctx) => [registration(TenantDeletionService, file_bulwark_compliance_v1_tenant_deletion_service, new TenantDeletionServiceImpl(ctx.deps.db))],
  start: async (ctx) => lifecycleConsumerOf(ctx).start(),
  stop: async (ctx) => lifecycleConsumerOf(ctx).stop(),
};
