import { create } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "@bulwark/core";
import { MfaRequirement, SecurityPolicySchema, type SecurityPolicy } from "@bulwark/contracts";
import type { SecurityPolicyRow } from "./entities/security-policy.entity.js";

const day = 86_400;

/** The policy a new tenant starts with: the defaults the issue and OWASP name. */
export function defaultPolicyRow(tenantId: string, now: Date): SecurityPolicyRow {
  return {
    tenantId,
    mfaRequirement: MfaRequirement[MfaRequirement.ADMINS],
    passwordMinLength: 12,
    accessTokenLifetimeS: 3_600,
    refreshTokenLifetimeS: day,
    idleTimeoutS: 1_800,
    apiKeyMaxLifetimeS: 90 * day,
    ipAllowlist: [],
    auditRetentionS: 730 * day,
    inactiveAfterDays: 365,
    warnAfterDays: 335,
    graceDays: 30,
    reauthenticationWindowS: 900,
    encryptionKeyRotationPeriodS: 365 * day,
    revision: 1,
    updatedAt: now,
  };
}

function duration(seconds: number): Duration {
  return create(DurationSchema, { seconds: BigInt(seconds) });
}

/** The wire form of a stored policy. */
export function policyToProto(row: SecurityPolicyRow): SecurityPolicy {
  return create(SecurityPolicySchema, {
    tenantId: row.tenantId,
    mfaRequirement: MfaRequirement[row.mfaRequirement as keyof typeof MfaRequirement],
    passwordMinLength: row.passwordMinLength,
    accessTokenLifetime: duration(row.accessTokenLifetimeS),
    refreshTokenLifetime: duration(row.refreshTokenLifetimeS),
    idleTimeout: duration(row.idleTimeoutS),
    apiKeyMaxLifetime: duration(row.apiKeyMaxLifetimeS),
    ipAllowlist: [...row.ipAllowlist],
    auditRetention: duration(row.auditRetentionS),
    inactiveAccount: { inactiveAfterDays: row.inactiveAfterDays, warnAfterDays: row.warnAfterDays, graceDays: row.graceDays },
    revision: BigInt(row.revision),
    reauthenticationWindow: duration(row.reauthenticationWindowS),
    encryptionKeyRotationPeriod: duration(row.encryptionKeyRotationPeriodS),
  });
}

function seconds(field: string, d: Duration | undefined): number {
  if (d === undefined) throw invalidArgument(`policy.${field}`, "is required when named in update_mask");
  return Number(d.seconds);
}

/**
 * Applies the fields named in an update mask to a stored policy and returns
 * the names that changed. Unknown paths, and a result that contradicts
 * itself, are INVALID_ARGUMENT naming the field.
 */
export function applyPolicyMask(row: SecurityPolicyRow, update: SecurityPolicy, paths: readonly string[]): string[] {
  const before = JSON.stringify(row);
  const changed: string[] = [];
  const set = <K extends keyof SecurityPolicyRow>(name: string, key: K, value: SecurityPolicyRow[K]): void => {
    if (JSON.stringify(row[key]) !== JSON.stringify(value)) changed.push(name);
    row[key] = value;
  };
  for (const path of new Set(paths)) {
    switch (path) {
      case "mfa_requirement":
        set(path, "mfaRequirement", MfaRequirement[update.mfaRequirement === MfaRequirement.UNSPECIFIED ? MfaRequirement.ADMINS : update.mfaRequirement]);
        break;
      case "password_min_length":
        if (update.passwordMinLength === 0) throw invalidArgument("policy.password_min_length", "is required when named in update_mask");
        set(path, "passwordMinLength", update.passwordMinLength);
        break;
      case "access_token_lifetime":
        set(path, "accessTokenLifetimeS", seconds(path, update.accessTokenLifetime));
        break;
      case "refresh_token_lifetime":
        set(path, "refreshTokenLifetimeS", seconds(path, update.refreshTokenLifetime));
        break;
      case "idle_timeout":
        set(path, "idleTimeoutS", seconds(path, update.idleTimeout));
        break;
      case "api_key_max_lifetime":
        set(path, "apiKeyMaxLifetimeS", seconds(path, update.apiKeyMaxLifetime));
        break;
      case "ip_allowlist":
        set(path, "ipAllowlist", [...update.ipAllowlist]);
        break;
      case "audit_retention":
        set(path, "auditRetentionS", seconds(path, update.auditRetention));
        break;
      case "reauthentication_window":
        set(path, "reauthenticationWindowS", seconds(path, update.reauthenticationWindow));
        break;
      case "encryption_key_rotation_period":
        set(path, "encryptionKeyRotationPeriodS", seconds(path, update.encryptionKeyRotationPeriod));
        break;
      case "inactive_account": {
        const ia = update.inactiveAccount;
        if (ia === undefined) throw invalidArgument("policy.inactive_account", "is required when named in update_mask");
        if (ia.inactiveAfterDays === 0 || ia.warnAfterDays === 0 || ia.graceDays === 0) throw invalidArgument("policy.inactive_account", "needs inactive_after_days, warn_after_days and grace_days");
        set("inactive_account", "inactiveAfterDays", ia.inactiveAfterDays);
        set("inactive_account", "warnAfterDays", ia.warnAfterDays);
        set("inactive_account", "graceDays", ia.graceDays);
        break;
      }
      default:
        throw invalidArgument("update_mask", `"${path.slice(0, 64)}" is not an updatable policy field`);
    }
  }
  if (row.warnAfterDays >= row.inactiveAfterDays) throw invalidArgument("policy.inactive_account.warn_after_days", "must be less than inactive_after_days");
  if (row.refreshTokenLifetimeS < row.accessTokenLifetimeS) throw invalidArgument("policy.refresh_token_lifetime", "must be at least access_token_lifetime");
  if (JSON.stringify(row) === before) return [];
  return [...new Set(changed)];
}

