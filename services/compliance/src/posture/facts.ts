/**
 * What the posture controls are evaluated from: one snapshot of a tenant's
 * users, roles, sessions, API keys, key ring and policy as the owning
 * services answered, plus compliance's own access reviews. Plain data, so
 * the controls are pure functions a unit test feeds directly.
 */
export interface PostureFacts {
  readonly tenantId: string;
  /** The time the snapshot was taken at: every age is measured from it. */
  readonly now: Date;
  readonly users: readonly UserFact[];
  readonly roles: readonly RoleFact[];
  /** Live sessions (not revoked, not expired). */
  readonly sessions: readonly SessionFact[];
  /** Active API keys. */
  readonly apiKeys: readonly ApiKeyFact[];
  /** The tenant's key ring; null when it has none yet (nothing encrypted); undefined when keys could not say. */
  readonly keyRing: KeyRingFact | null | undefined;
  /** The tenant policy's audit retention in seconds; undefined if unset. */
  readonly auditRetentionS: number | undefined;
  /** Per user: the latest close time of an access review campaign that decided each of their admin grants. */
  readonly adminReviews: ReadonlyMap<string, ReadonlyMap<string, Date>>;
  /** Sources that could not be read (a control that needs one is ERROR). */
  readonly unavailable: ReadonlySet<FactSource>;
}

/** The services (and compliance's own store) facts come from. */
export type FactSource = "identity" | "keys" | "tenancy" | "reviews";

/** A user of the tenant as identity lists it. */
export interface UserFact {
  readonly id: string;
  readonly displayName: string;
  readonly state: "invited" | "active" | "suspended";
  readonly roleIds: readonly string[];
  readonly mfaEnrolled: boolean;
  readonly createTime: Date;
  readonly lastSignInTime: Date | undefined;
  readonly lastActivityTime: Date | undefined;
}

/** A role of the tenant (system or custom). */
export interface RoleFact {
  readonly id: string;
  readonly name: string;
  /** Owner and Admin (and any custom role marked so): holders must use MFA. */
  readonly requiresMfa: boolean;
}

/** One live session. */
export interface SessionFact {
  readonly id: string;
  readonly userId: string;
  readonly createTime: Date;
  readonly lastSeenTime: Date;
}

/** One active API key (metadata only). */
export interface ApiKeyFact {
  readonly id: string;
  readonly name: string;
  readonly ownerUserId: string;
  readonly createTime: Date;
  readonly expireTime: Date | undefined;
}

/** The tenant's key ring as keys describes it. */
export interface KeyRingFact {
  readonly keyId: string;
  readonly destroyed: boolean;
  /** When the current version was made. */
  readonly rotateTime: Date;
  /** The rotation period in force, seconds. */
  readonly rotationPeriodS: number;
}

/** The ids of the roles whose holders are administrators: the system Owner and Admin, and any role that requires MFA. */
export function adminRoleIds(roles: readonly RoleFact[]): Set<string> {
  const ids = new Set(["system:owner", "system:admin"]);
  for (const r of roles) if (r.requiresMfa) ids.add(r.id);
  return ids;
}
