import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A tenant's security policy, one row per tenant. Durations are stored in
 * whole seconds; `revision` increases with every change for optimistic
 * concurrency (UpdateSecurityPolicy's expected_revision).
 */
export const SecurityPolicyEntity = defineEntity({
  name: "SecurityPolicy",
  tableName: "security_policies",
  properties: (p) => ({
    tenantId: p.string().primary(),
    mfaRequirement: p.string(),
    passwordMinLength: p.integer(),
    accessTokenLifetimeS: p.integer(),
    refreshTokenLifetimeS: p.integer(),
    idleTimeoutS: p.integer(),
    apiKeyMaxLifetimeS: p.integer(),
    ipAllowlist: p.array(),
    auditRetentionS: p.integer(),
    inactiveAfterDays: p.integer(),
    warnAfterDays: p.integer(),
    graceDays: p.integer(),
    reauthenticationWindowS: p.integer(),
    encryptionKeyRotationPeriodS: p.integer(),
    revision: p.integer(),
    updatedAt: p.datetime(),
  }),
});

/** A loaded policy row. */
export type SecurityPolicyRow = InferEntity<typeof SecurityPolicyEntity>;
