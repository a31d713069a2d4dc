import { recordTenantState, openTenantStatusBucket } from "@bulwark/events";
import { file_bulwark_tenancy_v1_tenancy_service, TenancyService, TenantState } from "@bulwark/contracts";
import { runInTenant } from "@bulwark/core";
import { streamOf, type ServiceModule } from "@bulwark/server";
import type { KV } from "@nats-io/kv";
import { SecurityPolicyEntity } from "./entities/security-policy.entity.js";
import { TenantEntity } from "./entities/tenant.entity.js";
import { migrations } from "./migrations/index.js";
import { TenancyServiceImpl } from "./tenancy-service.js";
import { stored } from "./tenant-mapper.js";

let statusBucket: KV | undefined;

/**
 * The tenancy service as the runtime starts it: its entities and
 * migrations, the TenancyService implementation, and the consumer that
 * mirrors each tenant's state into the tenant-status bucket every service
 * watches (so a suspension is enforced mesh-wide).
 */
export const tenancyModule: ServiceModule = {
  name: "tenancy",
  entities: [TenantEntity, SecurityPolicyEntity],
  migrations,
  async onStart(deps) {
    statusBucket = await openTenantStatusBucket(deps.nc, deps.config.EVENTS_SUBJECT_PREFIX);
  },
  services: (deps) => [
    {
      service: TenancyService,
      file: file_bulwark_tenancy_v1_tenancy_service,
      impl: new TenancyServiceImpl({ db: deps.db, events: deps.events, afterCommit: () => deps.relay.nudge() }) as never,
    },
  ],
  consumers: (deps) => [
    {
      stream: streamOf(deps.config.EVENTS_SUBJECT_PREFIX, "tenancy").name,
      durable: "tenancy_tenant_status",
      filterSubjects: [`${deps.config.EVENTS_SUBJECT_PREFIX}.tenancy.tenant.>`],
      maxDeliver: 10,
      backoffMs: [200, 1000, 5000],
      async handle(event, em) {
        const tenantId = event.envelope.aggregateId;
        const row = await runInTenant(tenantId, () => em.findOne(TenantEntity, { id: tenantId }, { fields: ["state"] }));
        const state = row?.state ?? stored.state(TenantState.ACTIVE);
        const kv = statusBucket;
        if (kv === undefined) throw new Error("tenant status bucket is not open");
        await recordTenantState(kv, tenantId, state === stored.state(TenantState.SUSPENDED) ? "suspended" : state === stored.state(TenantState.CLOSING) ? "closing" : "active");
      },
    },
  ],
};
