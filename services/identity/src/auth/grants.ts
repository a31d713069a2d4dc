import { create } from "@bufbuild/protobuf";
import { GrantsReducedSchema } from "@bulwark/contracts";
import type { RevokedSessions } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";

/** A user whose permissions were just reduced, for this process's revocation set after commit. */
export interface Reduced {
  readonly userId: string;
  readonly epoch: number;
  readonly validUntilUnix: number;
}

/** Why a user's permissions shrank, as GrantsReduced.reason says it. */
export type ReduceReason = "role_revoked" | "role_narrowed" | "mfa_reset" | "ownership_transferred";

/**
 * Inside the caller's transaction: raises the permission epoch of each user
 * and records `user.grants_reduced` for them, so every service refuses the
 * access tokens they hold now (issued under the older epoch) from the moment
 * the event arrives. Their refresh tokens keep working and yield tokens with
 * the reduced permissions. `validForS` bounds how long an outdated token
 * could live (the longest access-token lifetime).
 */
export async function reduceGrants(em: EntityManager, events: EventPublisher, userIds: readonly string[], reason: ReduceReason, validForS: number): Promise<Reduced[]> {
  if (userIds.length === 0) return [];
  const raised = await em.execute<{ id: string; permission_epoch: number }[]>("update users set permission_epoch = permission_epoch + 1 where id in (?) returning id, permission_epoch", [[...new Set(userIds)]]);
  const until = Math.floor(Date.now() / 1000) + validForS + 60;
  const validUntilUnix = BigInt(until);
  for (const r of raised) {
    await events.publish(em, {
      aggregate: "user",
      verb: "grants_reduced",
      aggregateId: r.id,
      schema: GrantsReducedSchema,
      payload: create(GrantsReducedSchema, { userId: r.id, permissionEpoch: BigInt(r.permission_epoch), validUntilUnix, reason }),
    });
  }
  return raised.map((r) => ({ userId: r.id, epoch: r.permission_epoch, validUntilUnix: until }));
}

/**
 * After commit: this process refuses the users' outdated tokens at once
 * (the other services learn it from the event within a second).
 */
export function rememberReduced(revoked: RevokedSessions | undefined, reduced: readonly Reduced[]): void {
  for (const r of reduced) revoked?.reduceGrants(r.userId, r.epoch, r.validUntilUnix);
}
