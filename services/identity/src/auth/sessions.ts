import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SessionRevokedSchema, SessionSchema, type Session } from "@bulwark/contracts";
import type { RevokedSessions } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import type { SessionRow } from "../entities/session.entity.js";

/** Why a session ended, as SessionRevoked.reason says it. */
export type RevokeReason = "sign_out" | "revoked" | "password_changed" | "user_suspended" | "refresh_token_reused" | "user_deleted";

/** Which sessions to end. */
export type RevokeTarget = { readonly sessionId: string } | { readonly userId: string; readonly exceptSessionId?: string };

/** A session that was just revoked, for the in-process revocation set after commit. */
export interface Revoked {
  readonly sessionId: string;
  readonly userId: string;
  readonly validUntilUnix: number;
}

/**
 * Ends sessions inside the caller's transaction: marks them revoked (once:
 * already revoked ones are left alone), kills their unused refresh tokens,
 * and records a SessionRevoked event per session, valid until the last
 * access token they could hold has expired. The caller passes the result to
 * `rememberRevoked` after commit.
 */
export async function revokeSessions(em: EntityManager, events: EventPublisher, target: RevokeTarget, reason: RevokeReason, accessTokenLifetimeS: number): Promise<Revoked[]> {
  const rows =
    "sessionId" in target
      ? await em.execute<{ id: string; user_id: string }[]>("update sessions set revoked_at = now(), revoke_reason = ? where id = ? and revoked_at is null returning id, user_id", [reason, target.sessionId])
      : await em.execute<{ id: string; user_id: string }[]>("update sessions set revoked_at = now(), revoke_reason = ? where user_id = ? and id <> ? and revoked_at is null returning id, user_id", [reason, target.userId, target.exceptSessionId ?? ""]);
  const validUntilUnix = Math.floor(Date.now() / 1000) + accessTokenLifetimeS + 60;
  const out: Revoked[] = [];
  for (const r of rows) {
    await em.execute("update refresh_tokens set used_at = coalesce(used_at, now()), expires_at = least(expires_at, now()) where session_id = ?", [r.id]);
    await events.publish(em, {
      aggregate: "session",
      verb: "revoked",
      aggregateId: r.id,
      schema: SessionRevokedSchema,
      payload: create(SessionRevokedSchema, { sessionId: r.id, userId: r.user_id, reason, validUntilUnix: BigInt(validUntilUnix) }),
    });
    out.push({ sessionId: r.id, userId: r.user_id, validUntilUnix });
  }
  return out;
}

/** After commit: this process refuses the sessions' tokens at once (other processes learn it from the event). */
export function rememberRevoked(revoked: RevokedSessions, sessions: readonly Revoked[]): void {
  for (const s of sessions) revoked.revoke(s.sessionId, s.validUntilUnix);
}

/** True while a session may be used: not revoked, before its absolute and idle timeouts. */
export function sessionLive(s: Pick<SessionRow, "revokedAt" | "expiresAt" | "lastSeenAt" | "idleTimeoutS">, now: Date): boolean {
  return s.revokedAt === null && new Date(s.expiresAt).getTime() > now.getTime() && new Date(s.lastSeenAt).getTime() + s.idleTimeoutS * 1000 > now.getTime();
}

/** The wire form of a session. */
export function sessionToProto(s: SessionRow, currentSessionId: string | undefined): Session {
  return create(SessionSchema, {
    id: s.id,
    userId: s.userId,
    device: s.device,
    userAgent: s.userAgent,
    ipAddress: s.ipAddress,
    createTime: timestampFromDate(new Date(s.createdAt)),
    lastSeenTime: timestampFromDate(new Date(s.lastSeenAt)),
    expireTime: timestampFromDate(new Date(s.expiresAt)),
    current: s.id === currentSessionId,
  });
}
