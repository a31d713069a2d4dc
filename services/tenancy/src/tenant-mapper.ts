import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Plan, Region, TenantSchema, TenantState, type Tenant as TenantMessage } from "@bulwark/contracts";
import type { Tenant } from "./entities/tenant.entity.js";

/** The wire form of a stored tenant. */
export function tenantToProto(t: Tenant): TenantMessage {
  return create(TenantSchema, {
    id: t.id,
    slug: t.slug,
    displayName: t.displayName,
    region: Region[t.region as keyof typeof Region],
    plan: Plan[t.plan as keyof typeof Plan],
    state: TenantState[t.state as keyof typeof TenantState],
    stateReason: t.stateReason,
    createTime: timestampFromDate(t.createdAt),
    updateTime: timestampFromDate(t.updatedAt),
    ...(t.closedAt ? { closeTime: timestampFromDate(t.closedAt) } : {}),
    ...(t.purgeAt ? { purgeTime: timestampFromDate(t.purgeAt) } : {}),
  });
}

/** Stored names of enum values (stable across renumbering). */
export const stored = {
  region: (r: Region): string => Region[r],
  plan: (p: Plan): string => Plan[p],
  state: (s: TenantState): string => TenantState[s],
};
