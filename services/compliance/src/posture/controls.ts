import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ControlSchema, ControlState, type Control, type FailingItem } from "@bulwark/contracts";
import { adminRoleIds, type FactSource, type PostureFacts, type UserFact } from "./facts.js";

const dayMs = 86_400_000;

/** The thresholds the controls apply; defaults are what SOC 2 auditors commonly expect. */
export interface PostureThresholds {
  /** The share of active users with MFA that passes `mfa_adoption` (0-1). */
  readonly mfaAdoption: number;
  /** API keys older than this fail `api_key_age`. */
  readonly apiKeyMaxAgeDays: number;
  /** Active users idle this long fail `inactive_accounts`. */
  readonly inactiveAfterDays: number;
  /** Live sessions started this long ago fail `stale_sessions`. */
  readonly staleSessionDays: number;
  /** The least audit retention that passes `audit_retention`. */
  readonly minAuditRetentionDays: number;
  /** How late past its rotation period a key ring may be before `key_rotation` fails. */
  readonly rotationGraceDays: number;
}

/** The defaults of every threshold. */
export const defaultThresholds: PostureThresholds = {
  mfaAdoption: 0.9,
  apiKeyMaxAgeDays: 90,
  inactiveAfterDays: 90,
  staleSessionDays: 30,
  minAuditRetentionDays: 365,
  rotationGraceDays: 1,
};

/** The most failing items a control lists (failing_count has them all). */
export const maxFailingItems = 100;

/** One control: its identity, its framework references and how it is evaluated. */
export interface ControlDefinition {
  readonly id: string;
  readonly title: string;
  readonly description: string;
  readonly soc2: readonly string[];
  readonly iso27001: readonly string[];
  /** The sources it reads: if one is unavailable the control is ERROR, never a false PASS. */
  readonly needs: readonly FactSource[];
  evaluate(f: PostureFacts, t: PostureThresholds): Outcome;
}

/** What evaluating a control found. */
interface Outcome {
  readonly failing: FailingItem[];
  readonly evidence: string;
  /** Passes despite failing items (a rate above its threshold). */
  readonly pass?: boolean;
  readonly value?: number;
}

const item = (id: string, reason: string): FailingItem => ({ $typeName: "bulwark.compliance.v1.FailingItem", id, reason });
const days = (ms: number): number => Math.floor(ms / dayMs);
const active = (f: PostureFacts): UserFact[] => f.users.filter((u) => u.state === "active");
const lastSeen = (u: UserFact): Date => [u.lastActivityTime, u.lastSignInTime, u.createTime].filter((d): d is Date => d !== undefined).reduce((a, b) => (a > b ? a : b));

/** The start of the calendar quarter (UTC) `now` is in. */
export function quarterStart(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), Math.floor(now.getUTCMonth() / 3) * 3, 1));
}

/**
 * The controls, in report order. Each maps to the SOC 2 Trust Services
 * Criteria (2017, revised points of focus 2022) and ISO/IEC 27001:2022
 * Annex A controls it gives evidence for.
 */
export const controls: readonly ControlDefinition[] = [
  {
    id: "mfa_admins",
    title: "MFA on every admin and owner",
    description: "Every active user holding an administrative role (Owner, Admin, or a role that requires MFA) has a confirmed second factor.",
    soc2: ["CC6.1", "CC6.6"],
    iso27001: ["A.5.17", "A.8.2", "A.8.5"],
    needs: ["identity"],
    evaluate(f) {
      const admin = adminRoleIds(f.roles);
      const admins = active(f).filter((u) => u.roleIds.some((r) => admin.has(r)));
      const failing = admins.filter((u) => !u.mfaEnrolled).map((u) => item(u.id, `holds ${u.roleIds.filter((r) => admin.has(r)).join(", ")} without a second factor`));
      return { failing, evidence: `${admins.length - failing.length} of ${admins.length} active administrators have MFA`, value: admins.length === 0 ? 1 : (admins.length - failing.length) / admins.length };
    },
  },
  {
    id: "mfa_adoption",
    title: "MFA adoption rate",
    description: "At least the threshold share of active users has a confirmed second factor.",
    soc2: ["CC6.1"],
    iso27001: ["A.5.17", "A.8.5"],
    needs: ["identity"],
    evaluate(f, t) {
      const users = active(f);
      const without = users.filter((u) => !u.mfaEnrolled);
      const rate = users.length === 0 ? 1 : (users.length - without.length) / users.length;
      return {
        failing: without.map((u) => item(u.id, "no second factor")),
        pass: rate >= t.mfaAdoption,
        value: rate,
        evidence: `${(rate * 100).toFixed(1)} % of ${users.length} active users have MFA (threshold ${(t.mfaAdoption * 100).toFixed(0)} %)`,
      };
    },
  },
  {
    id: "api_key_age",
    title: "API keys rotated within 90 days and expiring",
    description: "No active API key is older than the maximum age or lacks an expiry.",
    soc2: ["CC6.1", "CC6.2"],
    iso27001: ["A.5.17", "A.8.24"],
    needs: ["keys"],
    evaluate(f, t) {
      const failing: FailingItem[] = [];
      for (const k of f.apiKeys) {
        const age = days(f.now.getTime() - k.createTime.getTime());
        if (k.expireTime === undefined) failing.push(item(k.id, "has no expiry"));
        else if (age > t.apiKeyMaxAgeDays) failing.push(item(k.id, `is ${age} days old (maximum ${t.apiKeyMaxAgeDays})`));
      }
      return { failing, evidence: `${f.apiKeys.length - failing.length} of ${f.apiKeys.length} active API keys are at most ${t.apiKeyMaxAgeDays} days old and expire` };
    },
  },
  {
    id: "inactive_accounts",
    title: "No inactive accounts",
    description: "No active user has gone without signing in or using the product for longer than the threshold.",
    soc2: ["CC6.2", "CC6.3"],
    iso27001: ["A.5.16", "A.5.18"],
    needs: ["identity"],
    evaluate(f, t) {
      const users = active(f);
      const failing = users
        .map((u) => ({ u, idle: days(f.now.getTime() - lastSeen(u).getTime()) }))
        .filter((x) => x.idle > t.inactiveAfterDays)
        .map((x) => item(x.u.id, `inactive for ${x.idle} days`));
      return { failing, evidence: `${failing.length} of ${users.length} active users inactive for more than ${t.inactiveAfterDays} days` };
    },
  },
  {
    id: "stale_sessions",
    title: "No stale sessions",
    description: "No live session started longer ago than the threshold (users re-authenticate regularly).",
    soc2: ["CC6.1"],
    iso27001: ["A.8.5"],
    needs: ["identity"],
    evaluate(f, t) {
      const failing = f.sessions
        .map((s) => ({ s, age: days(f.now.getTime() - s.createTime.getTime()) }))
        .filter((x) => x.age > t.staleSessionDays)
        .map((x) => item(x.s.id, `session of ${x.s.userId} started ${x.age} days ago`));
      return { failing, evidence: `${failing.length} of ${f.sessions.length} live sessions older than ${t.staleSessionDays} days` };
    },
  },
  {
    id: "audit_retention",
    title: "Audit retention set",
    description: "The tenant keeps its audit trail for at least the minimum retention.",
    soc2: ["CC7.2", "CC7.3"],
    iso27001: ["A.5.33", "A.8.15"],
    needs: ["tenancy"],
    evaluate(f, t) {
      const d = f.auditRetentionS === undefined ? undefined : Math.floor(f.auditRetentionS / 86_400);
      const failing = d === undefined ? [item("policy.audit_retention", "is not set")] : d < t.minAuditRetentionDays ? [item("policy.audit_retention", `is ${d} days (minimum ${t.minAuditRetentionDays})`)] : [];
      return { failing, evidence: d === undefined ? "no audit retention in the tenant policy" : `audit entries are kept ${d} days (minimum ${t.minAuditRetentionDays})`, value: d ?? 0 };
    },
  },
  {
    id: "key_rotation",
    title: "Encryption keys rotated within policy",
    description: "The tenant's data key ring made its current version within its rotation period.",
    soc2: ["CC6.1", "CC6.7"],
    iso27001: ["A.8.24"],
    needs: ["keys"],
    evaluate(f, t) {
      const r = f.keyRing;
      if (r === undefined) return { failing: [item("key_ring", "could not be read")], evidence: "the tenant's key ring could not be read" };
      if (r === null) return { failing: [], evidence: "the tenant has no key ring yet (nothing encrypted, nothing to rotate)" };
      if (r.destroyed) return { failing: [], evidence: `key ring ${r.keyId} is destroyed (nothing to rotate)` };
      const age = days(f.now.getTime() - r.rotateTime.getTime());
      const period = Math.floor(r.rotationPeriodS / 86_400);
      const failing = age > period + t.rotationGraceDays ? [item(r.keyId, `current version is ${age} days old (rotation period ${period} days)`)] : [];
      return { failing, evidence: `key ring ${r.keyId}: current version ${age} days old, rotation period ${period} days` };
    },
  },
  {
    id: "admin_review",
    title: "Admins reviewed this quarter",
    description: "Every administrative grant of an active user was decided in an access review closed this calendar quarter.",
    soc2: ["CC6.2", "CC6.3"],
    iso27001: ["A.5.15", "A.5.18"],
    needs: ["identity", "reviews"],
    evaluate(f) {
      const admin = adminRoleIds(f.roles);
      const since = quarterStart(f.now);
      const failing: FailingItem[] = [];
      let grants = 0;
      for (const u of active(f)) {
        for (const r of u.roleIds) {
          if (!admin.has(r)) continue;
          grants++;
          const reviewed = f.adminReviews.get(u.id)?.get(r);
          if (reviewed === undefined || reviewed < since) failing.push(item(u.id, `grant of ${r} not reviewed since ${since.toISOString().slice(0, 10)}`));
        }
      }
      return { failing, evidence: `${grants - failing.length} of ${grants} administrative grants reviewed since ${since.toISOString().slice(0, 10)}` };
    },
  },
];

/** Evaluates every control on one snapshot of facts. */
export function evaluateControls(f: PostureFacts, t: PostureThresholds = defaultThresholds): Control[] {
  const evaluateTime = timestampFromDate(f.now);
  return controls.map((c) => {
    const base = { id: c.id, title: c.title, description: c.description, soc2: [...c.soc2], iso27001: [...c.iso27001], evaluateTime };
    const missing = c.needs.filter((s) => f.unavailable.has(s));
    if (missing.length > 0) {
      return create(ControlSchema, { ...base, state: ControlState.ERROR, evidence: `not evaluated: ${missing.join(", ")} unavailable` });
    }
    const o = c.evaluate(f, t);
    const pass = o.pass ?? o.failing.length === 0;
    return create(ControlSchema, {
      ...base,
      state: pass ? ControlState.PASS : ControlState.FAIL,
      failingItems: o.failing.slice(0, maxFailingItems),
      failingCount: o.failing.length,
      evidence: o.evidence,
      value: o.value ?? 0,
    });
  });
}
