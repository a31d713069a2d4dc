import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * One signed-in device of a user. `expiresAt` is the absolute timeout (the
 * tenant's refresh-token lifetime from sign-in); the idle timeout runs from
 * `lastSeenAt`. A revoked session keeps its row (and reason) for the session
 * list and the audit trail; `mfaPending` marks a session whose tokens are
 * limited to enrolling a second factor.
 */
export const SessionEntity = defineEntity({
  name: "Session",
  tableName: "sessions",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    userId: p.string(),
    device: p.string().default(""),
    userAgent: p.string().default(""),
    ipAddress: p.string().default(""),
    mfaPending: p.boolean().default(false),
    createdAt: p.datetime(),
    /** When the user last authenticated in this session: sign-in, then each Reauthenticate. */
    authTime: p.datetime(),
    lastSeenAt: p.datetime(),
    idleTimeoutS: p.integer(),
    expiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
    revokeReason: p.string().nullable(),
  }),
});

/** A loaded session row. */
export type SessionRow = InferEntity<typeof SessionEntity>;
