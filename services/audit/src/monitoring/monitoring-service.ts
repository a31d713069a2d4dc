import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AuditMonitoringSettingsUpdatedSchema,
  MonitoringRuleSchema,
  MonitoringSettingsSchema,
  type GetMonitoringSettingsRequest,
  type GetMonitoringSettingsResponse,
  type MonitoringService,
  type MonitoringSettings as MonitoringSettingsProto,
  type UpdateMonitoringSettingsRequest,
  type UpdateMonitoringSettingsResponse,
} from "@bulwark/contracts";
import { invalidArgument, runInTenant } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { AuditContext } from "../context.js";
import { platformTenant } from "../ingest/mapping.js";
import { tenantOfCall } from "../log/audit-log-service.js";
import { defaultAdminRoles, defaultRules, effectiveSettings, monitoringSettingsSchema, ruleNames, type MonitoringSettings, type RuleName } from "./rules.js";

/** Rules that count events in a sliding window; the others fire on one event and take no threshold or window. */
const windowed = (rule: RuleName): boolean => defaultRules[rule].windowSeconds > 0;

const maskPaths = new Set(["rules", "admin_roles"]);

interface Stored {
  readonly settings: MonitoringSettings;
  readonly updatedAt: Date | undefined;
}

/** The settings as they apply: every rule over its default, in catalogue order. */
function toProto(stored: Stored): MonitoringSettingsProto {
  const effective = effectiveSettings(stored.settings);
  return create(MonitoringSettingsSchema, {
    rules: ruleNames.map((rule) => {
      const cfg = effective.rules[rule];
      const d = defaultRules[rule];
      return create(MonitoringRuleSchema, {
        rule,
        enabled: cfg.enabled,
        threshold: cfg.threshold,
        windowSeconds: cfg.windowSeconds,
        severity: cfg.severity,
        windowed: windowed(rule),
        customized: cfg.enabled !== d.enabled || cfg.threshold !== d.threshold || cfg.windowSeconds !== d.windowSeconds,
      });
    }),
    adminRoles: [...effective.adminRoles],
    updateTime: stored.updatedAt === undefined ? undefined : timestampFromDate(stored.updatedAt),
  });
}

/** A tenant's monitoring settings: operators name the tenant; the platform pseudo-tenant has no rules. */
function monitoredTenant(requested: string): string {
  const tenantId = tenantOfCall(requested);
  if (tenantId === platformTenant) throw invalidArgument("tenant_id", "must be a tenant id (ten_…); platform events are not monitored");
  return tenantId;
}

/**
 * bulwark.audit.v1.MonitoringService: a tenant's monitoring rules
 * (`monitor_settings.rules`, read by the Monitor on every event), under the
 * tenant's row-level security. A change and its event are one transaction.
 */
export class MonitoringServiceImpl implements ServiceImpl<typeof MonitoringService> {
  readonly #ctx: AuditContext;

  constructor(ctx: AuditContext) {
    this.#ctx = ctx;
  }

  async #load(em: EntityManager, tenantId: string, lock: boolean): Promise<Stored> {
    const [row] = await em.execute<{ rules: unknown; updated_at: Date }[]>(`select rules, updated_at from monitor_settings where tenant_id = ?${lock ? " for update" : ""}`, [tenantId]);
    if (row === undefined) return { settings: {}, updatedAt: undefined };
    const parsed = monitoringSettingsSchema.safeParse(row.rules);
    // A malformed row counts as none, exactly as the Monitor reads it.
    return { settings: parsed.success ? parsed.data : {}, updatedAt: new Date(row.updated_at) };
  }

  async getMonitoringSettings(req: GetMonitoringSettingsRequest): Promise<GetMonitoringSettingsResponse> {
    const tenantId = monitoredTenant(req.tenantId);
    const stored = await runInTenant(tenantId, () => this.#ctx.deps.db.transaction((em) => this.#load(em, tenantId, false)));
    return { $typeName: "bulwark.audit.v1.GetMonitoringSettingsResponse", settings: toProto(stored) };
  }

  async updateMonitoringSettings(req: UpdateMonitoringSettingsRequest): Promise<UpdateMonitoringSettingsResponse> {
    const tenantId = monitoredTenant(req.tenantId);
    const paths = req.updateMask?.paths ?? [];
    for (const p of paths) if (!maskPaths.has(p)) throw invalidArgument("update_mask", `"${p.slice(0, 64)}" is not a field that can be changed (rules, admin_roles)`);
    const seen = new Set<string>();
    req.rules.forEach((u, i) => {
      const rule = u.rule as RuleName;
      if (seen.has(rule)) throw invalidArgument(`rules[${i}].rule`, "names a rule already changed in this request");
      seen.add(rule);
      if (!windowed(rule) && u.threshold !== undefined) throw invalidArgument(`rules[${i}].threshold`, `${rule} fires on single events and takes no threshold`);
      if (!windowed(rule) && u.windowSeconds !== undefined) throw invalidArgument(`rules[${i}].window_seconds`, `${rule} fires on single events and takes no window`);
    });
    const applyRules = paths.includes("rules");
    const applyRoles = paths.includes("admin_roles");
    const stored = await runInTenant(tenantId, () =>
      this.#ctx.deps.db.transaction(async (em) => {
        const before = await this.#load(em, tenantId, true);
        const rules: Partial<Record<RuleName, { enabled?: boolean; threshold?: number; windowSeconds?: number }>> = { ...before.settings.rules };
        const changed: RuleName[] = [];
        if (applyRules) {
          for (const u of req.rules) {
            const rule = u.rule as RuleName;
            const was = JSON.stringify(effectiveSettings({ rules: { [rule]: rules[rule] } }).rules[rule]);
            const next = { ...(u.reset ? {} : rules[rule]) };
            if (u.enabled !== undefined) next.enabled = u.enabled;
            if (u.threshold !== undefined) next.threshold = u.threshold;
            if (u.windowSeconds !== undefined) next.windowSeconds = u.windowSeconds;
            if (Object.keys(next).length === 0) delete rules[rule];
            else rules[rule] = next;
            if (JSON.stringify(effectiveSettings({ rules: { [rule]: rules[rule] } }).rules[rule]) !== was) changed.push(rule);
          }
        }
        const adminRoles = applyRoles ? (req.adminRoles.length === 0 ? undefined : [...req.adminRoles]) : before.settings.adminRoles;
        const rolesChanged = applyRoles && JSON.stringify(adminRoles ?? defaultAdminRoles) !== JSON.stringify(before.settings.adminRoles ?? defaultAdminRoles);
        const settings = monitoringSettingsSchema.parse({ ...(Object.keys(rules).length > 0 ? { rules } : {}), ...(adminRoles !== undefined ? { adminRoles } : {}) });
        if (changed.length === 0 && !rolesChanged) return before;
        const [row] = await em.execute<{ updated_at: Date }[]>(
          `insert into monitor_settings (tenant_id, rules, updated_at) values (?, ?::jsonb, now())
           on conflict (tenant_id) do update set rules = excluded.rules, updated_at = excluded.updated_at returning updated_at`,
          [tenantId, JSON.stringify(settings)],
        );
        const effective = effectiveSettings(settings);
        await this.#ctx.deps.events.publish(em, {
          aggregate: "monitoring_settings",
          verb: "updated",
          aggregateId: tenantId,
          schema: AuditMonitoringSettingsUpdatedSchema,
          payload: create(AuditMonitoringSettingsUpdatedSchema, {
            changedRules: changed,
            disabledRules: changed.filter((r) => !effective.rules[r].enabled),
            adminRoles: rolesChanged ? [...effective.adminRoles] : [],
            adminRolesChanged: rolesChanged,
          }),
        });
        return { settings, updatedAt: new Date(row!.updated_at) };
      }),
    );
    this.#ctx.deps.relay.nudge();
    return { $typeName: "bulwark.audit.v1.UpdateMonitoringSettingsResponse", settings: toProto(stored) };
  }
}
