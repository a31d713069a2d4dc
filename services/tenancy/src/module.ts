import { recordTenantAccess, openTenantStatusBucket } from "@bulwark/events";
import { fromBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, file_bulwark_tenancy_v1_tenancy_service, TenancyService, TenantState } from "@bulwark/contracts";
import { participantRegistration, streamOf, type RuntimeDeps, type ServiceModule } from "@bulwark/server";
import { TenancyParticipantImpl } from "./participant/participant-service.js";
import type { KV } from "@nats-io/kv";
import { SecurityPolicyEntity } from "./entities/security-policy.entity.js";
import { TenantEntity } from "./entities/tenant.entity.js";
import { migrations } from "./migrations/index.js";
import { TenantCache } from "./tenant-cache.js";
import { TenancyServiceImpl } from "./tenancy-service.js";
import { stored } from "./tenant-mapper.js";

/** Per-start state (a process may start the service more than once in tests). */
interface TenancyState {
  readonly cache: TenantCache;
  readonly statusBucket: KV;
}
const states = new WeakMap<RuntimeDeps, TenancyState>();

function stateOf(deps: RuntimeDeps): TenancyState {
  const state = states.get(deps);
  if (state === undefined) throw new Error("tenancy started without onStart");
  return state;
}

/**
 * The tenancy service as the runtime starts it: its entities and
 * migrations, the TenancyService implementation, and the consumer that
 * mirrors each tenant's state and address allowlist into the tenant-status
 * bucket every service watches (so a suspension and an allowlist are
 * enforced mesh-wide); and the data-subject participant compliance calls
 * (participant/).
 */
export const tenancyModule: ServiceModule = {
  name: "tenancy",
  entities: [TenantEntity, SecurityPolicyEntity],
  migrations,
  async onStart(deps) {
    const cache = new TenantCache(deps.config.CACHE_TTL_MS, undefined, deps.metrics.cache);
    states.set(deps, { cache, statusBucket: await openTenantStatusBucket(deps.nc, deps.config.EVENTS_SUBJECT_PREFIX, deps.config.NATS_REPLICAS) });
    // Every replica evicts a tenant from its cache when any replica changes it.
    deps.nc.subscribe(`${deps.config.EVENTS_SUBJECT_PREFIX}.tenancy.tenant.>`, {
      callback: (err, msg) => {
        if (err !== null) return;
        try {
          cache.evict(fromBinary(EnvelopeSchema, msg.data).aggregateId);
        } catch {
          deps.logger.warn({ subject: msg.subject }, "undecodable tenancy event; cache entry left to expire");
        }
      },
    });
  },
  services: (deps) => [
    {
      service: TenancyService,
      file: file_bulwark_tenancy_v1_tenancy_service,
      impl: new TenancyServiceImpl({ db: deps.db, events: deps.events, cache: stateOf(deps).cache, afterCommit: () => deps.relay.nudge() }) as never,
    },
    // For compliance only: what tenancy holds about a data subject (nothing) and a closed tenant's erasure.
    participantRegistration(new TenancyParticipantImpl({ db: deps.db, events: deps.events, afterCommit: () => deps.relay.nudge() })),
  ],
  consumers: (deps) => [
    {
      stream: streamOf(deps.config.EVENTS_SUBJECT_PREFIX, "tenancy").name,
      source: "tenancy",
      durable: "tenancy_tenant_status",
      filterSubjects: [`${deps.config.EVENTS_SUBJECT_PREFIX}.tenancy.tenant.>`],
      maxDeliver: 10,
      backoffMs: [200, 1000, 5000],
      async handle(event, em) {
        const tenantId = event.envelope.aggregateId;
        // The consumer's transaction runs in the event's tenant, so row-level security shows this tenant's rows only.
        const row = await em.findOne(TenantEntity, { id: tenantId }, { fields: ["state"] });
        const policy = await em.findOne(SecurityPolicyEntity, { tenantId }, { fields: ["ipAllowlist"] });
        // A deleted tenant (compliance erased it after its closure) stays refused: no row, but never active again.
        const deleted = row === null && event.envelope.type.endsWith(".tenant.deleted");
        const state = deleted ? stored.state(TenantState.CLOSING) : (row?.state ?? stored.state(TenantState.ACTIVE));
        await recordTenantAccess(stateOf(deps).statusBucket, deps.keys, tenantId, {
          state: state === stored.state(TenantState.SUSPENDED) ? "suspended" : state === stored.state(TenantState.CLOSING) ? "closing" : "active",
          ipAllowlist: policy?.ipAllowlist ?? [],
        });
      },
    },
  ],
};
