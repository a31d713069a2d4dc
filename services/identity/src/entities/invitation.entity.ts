import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * The invitation of an invited user. Only the SHA-256 of the token (hex) is
 * stored, so a database reader cannot accept someone else's invitation; it is
 * single use (`usedAt`) and expires after seven days.
 */
export const InvitationEntity = defineEntity({
  name: "Invitation",
  tableName: "invitations",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    userId: p.string(),
    tokenHash: p.string().unique(),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
  }),
});

/** A loaded invitation row. */
export type Invitation = InferEntity<typeof InvitationEntity>;
