/**
 * Monitoring rules over the live event stream, per tenant. Each rule looks
 * at one event at a time with what Postgres remembers (a sliding window of
 * hits, addresses seen before, who holds an admin role) and may fire an
 * alert. Addresses are kept and compared only as the tenant's keyed hash.
 */
import { z } from "zod";
import { ActorKind, type Envelope } from "@bulwark/contracts";

export const ruleNames = [
  "failed_sign_ins_user",
  "failed_sign_ins_address",
  "new_sign_in_address",
  "api_key_new_address",
  "mass_export",
  "mass_deletion",
  "admin_mfa_disabled",
  "role_escalation",
] as const;
export type RuleName = (typeof ruleNames)[number];

const ruleSettings = z.object({
  enabled: z.boolean().optional(),
  threshold: z.number().int().min(1).max(100_000).optional(),
  windowSeconds: z.number().int().min(10).max(7 * 86_400).optional(),
});

/** A tenant's monitoring settings (stored in monitor_settings.rules; every field optional). */
export const monitoringSettingsSchema = z.object({
  rules: z.partialRecord(z.enum(ruleNames), ruleSettings).optional(),
  /** Role ids counted as administrative (default system:owner, system:admin). */
  adminRoles: z.array(z.string().min(1).max(128)).max(50).optional(),
});
export type MonitoringSettings = z.infer<typeof monitoringSettingsSchema>;

export interface RuleConfig {
  readonly enabled: boolean;
  readonly threshold: number;
  readonly windowSeconds: number;
  readonly severity: "info" | "warning" | "critical";
}

export const defaultRules: Readonly<Record<RuleName, RuleConfig>> = {
  failed_sign_ins_user: { enabled: true, threshold: 5, windowSeconds: 600, severity: "warning" },
  failed_sign_ins_address: { enabled: true, threshold: 10, windowSeconds: 600, severity: "warning" },
  new_sign_in_address: { enabled: true, threshold: 1, windowSeconds: 0, severity: "info" },
  api_key_new_address: { enabled: true, threshold: 1, windowSeconds: 0, severity: "warning" },
  mass_export: { enabled: true, threshold: 5, windowSeconds: 3600, severity: "warning" },
  mass_deletion: { enabled: true, threshold: 20, windowSeconds: 600, severity: "critical" },
  admin_mfa_disabled: { enabled: true, threshold: 1, windowSeconds: 0, severity: "critical" },
  role_escalation: { enabled: true, threshold: 1, windowSeconds: 0, severity: "warning" },
};
export const defaultAdminRoles = ["system:owner", "system:admin"];

export interface EffectiveSettings {
  readonly rules: Readonly<Record<RuleName, RuleConfig>>;
  readonly adminRoles: readonly string[];
}

/** The tenant's stored settings over the defaults (a malformed row counts as none). */
export function effectiveSettings(stored: unknown): EffectiveSettings {
  const parsed = monitoringSettingsSchema.safeParse(stored ?? {});
  const s = parsed.success ? parsed.data : {};
  const rules = {} as Record<RuleName, RuleConfig>;
  for (const name of ruleNames) {
    const o = s.rules?.[name] ?? {};
    const d = defaultRules[name];
    rules[name] = { ...d, ...(o.enabled !== undefined ? { enabled: o.enabled } : {}), ...(o.threshold !== undefined ? { threshold: o.threshold } : {}), ...(o.windowSeconds !== undefined ? { windowSeconds: o.windowSeconds } : {}) };
  }
  return { rules, adminRoles: s.adminRoles ?? defaultAdminRoles };
}

/** What one event means to the rules (from its action and payload fields). */
export type Signal =
  | { kind: "count"; rule: RuleName; key: string; subjectId?: string; addressHash?: string; summary: (n: number, windowS: number) => string }
  | { kind: "new_address"; rule: RuleName; subjectId: string; address: string; summary: string }
  | { kind: "once"; rule: RuleName; subjectId?: string; summary: string; requiresAdmin?: string }
  | { kind: "admin_role"; userId: string; roleId: string; held: boolean };

const minutes = (s: number): string => (s % 60 === 0 ? `${s / 60} minutes` : `${s} seconds`);

/** The action without the subject prefix: `identity.user.sign_in_failed`. */
export function actionOf(type: string, prefix: string): string {
  return type.startsWith(`${prefix}.`) ? type.slice(prefix.length + 1) : type.replace(/^bulwark\./, "");
}

/** The identity actions a rule reads. */
const watchedActions = new Set(["identity.user.sign_in_failed", "identity.user.signed_in", "identity.user.mfa_disabled", "identity.user.mfa_reset", "identity.role.assigned", "identity.role.revoked"]);

/** An export or a deletion by its verb (the action's last part), as the mass rules count them. */
const isExport = (verb: string): boolean => /(^|_)export/.test(verb);
const isDeletion = (verb: string): boolean => verb === "deleted" || verb === "destroyed" || verb.endsWith("_deleted");

/**
 * Whether any rule could act on an event of this action and actor, before
 * its payload is read: `signalsOf` is empty whenever this is false (it
 * starts by asking), so the monitor's consumer ignores the rest without
 * decoding them.
 */
export function mayConcern(action: string, envelope: Envelope): boolean {
  if (watchedActions.has(action)) return true;
  const actorId = envelope.actor?.id ?? "";
  if (actorId === "") return false;
  const verb = action.slice(action.lastIndexOf(".") + 1);
  return envelope.actor?.kind === ActorKind.API_KEY || isExport(verb) || isDeletion(verb);
}

/**
 * The signals of one event. `fields` are its payload's top-level scalar
 * fields by proto name; addresses are still plain here and are hashed
 * before anything is stored.
 */
export function signalsOf(action: string, envelope: Envelope, fields: ReadonlyMap<string, string>, adminRoles: readonly string[]): Signal[] {
  const out: Signal[] = [];
  if (!mayConcern(action, envelope)) return out;
  const userId = fields.get("user_id") ?? "";
  // The payload's address where it names one, else the client address of the call that did it (on the envelope).
  const ip = fields.get("ip_address") || fields.get("ip") || envelope.clientIp || "";
  const actorId = envelope.actor?.id ?? "";
  const verb = action.slice(action.lastIndexOf(".") + 1);
  if (action === "identity.user.sign_in_failed") {
    if (userId) out.push({ kind: "count", rule: "failed_sign_ins_user", key: userId, subjectId: userId, summary: (n, w) => `${n} failed sign-ins for ${userId} within ${minutes(w)}` });
    if (ip) out.push({ kind: "count", rule: "failed_sign_ins_address", key: `ip:${ip}`, summary: (n, w) => `${n} failed sign-ins from one address within ${minutes(w)}` });
  }
  if (action === "identity.user.signed_in" && userId && ip) {
    out.push({ kind: "new_address", rule: "new_sign_in_address", subjectId: userId, address: ip, summary: `${userId} signed in from an address not seen for them before` });
  }
  if (envelope.actor?.kind === ActorKind.API_KEY && actorId && ip) {
    out.push({ kind: "new_address", rule: "api_key_new_address", subjectId: actorId, address: ip, summary: `API key ${actorId} was used from an address not seen for it before` });
  }
  if (actorId && isExport(verb)) {
    out.push({ kind: "count", rule: "mass_export", key: actorId, subjectId: actorId, summary: (n, w) => `${n} exports by ${actorId} within ${minutes(w)}` });
  }
  if (actorId && isDeletion(verb)) {
    out.push({ kind: "count", rule: "mass_deletion", key: actorId, subjectId: actorId, summary: (n, w) => `${n} deletions by ${actorId} within ${minutes(w)}` });
  }
  if ((action === "identity.user.mfa_disabled" || action === "identity.user.mfa_reset") && userId) {
    out.push({ kind: "once", rule: "admin_mfa_disabled", subjectId: userId, requiresAdmin: userId, summary: `the second factor of administrator ${userId} was ${verb === "mfa_reset" ? "reset" : "disabled"}` });
  }
  const roleId = fields.get("role_id") ?? "";
  if ((action === "identity.role.assigned" || action === "identity.role.revoked") && userId && roleId && adminRoles.includes(roleId)) {
    out.push({ kind: "admin_role", userId, roleId, held: action === "identity.role.assigned" });
    if (action === "identity.role.assigned") out.push({ kind: "once", rule: "role_escalation", subjectId: userId, summary: `${userId} was given the administrative role ${roleId}${actorId ? ` by ${actorId}` : ""}` });
  }
  return out;
}
