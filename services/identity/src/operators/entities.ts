import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A platform operator: an account outside every tenant that manages
 * tenants. Platform-level (`tenantId` always null), so only the explicit
 * platform scope sees these rows. `state` is ACTIVE or DISABLED; a disabled
 * operator keeps the row for the audit trail.
 */
export const OperatorEntity = defineEntity({
  name: "Operator",
  tableName: "operators",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string().nullable(),
    email: p.string(),
    displayName: p.string(),
    passwordHash: p.text(),
    state: p.string(),
    createdAt: p.datetime(),
    lastSignInAt: p.datetime().nullable(),
  }),
});

/** A loaded operator row. */
export type OperatorRow = InferEntity<typeof OperatorEntity>;

/**
 * One operator sign-in. Its id is the `sid` of the operator's access token,
 * so revoking it (on DisableOperator) stops the token mesh-wide.
 */
export const OperatorSessionEntity = defineEntity({
  name: "OperatorSession",
  tableName: "operator_sessions",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string().nullable(),
    operatorId: p.string(),
    ipAddress: p.string().default(""),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
  }),
});

/** A loaded operator-session row. */
export type OperatorSessionRow = InferEntity<typeof OperatorSessionEntity>;
