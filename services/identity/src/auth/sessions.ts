import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SessionRevokedSchema, SessionSchema, type Session } from "@bulwark/contracts";
import type { RevokedSessions } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import type { SessionRow } from "../entities/session.entity.js";

/** Why a session ended, as SessionRevoked.reason says it. */
export type RevokeReason = "sign_out" | "revoked" | "password_changed" | "user_suspended" | "refresh_token_reused" | "user_deleted" | "operator_disabled" | "mfa_reset";

/** Which sessions to end (`userId` names the account: a user, or an operator in operator tables). */
export type RevokeTarget = { readonly sessionId: string } | { readonly userId: string; readonly exceptSessionId?: string };

/**
 * The tables of one kind of session: users' (`sessions`, tenant-owned) or
 * platform operators' (`operator_sessions`, platform). Both end the same
 * way, through `revokeSessions`.
 */
export interface SessionTables {
  readonly sessions: "sessions" | "operator_sessions";
  readonly refreshTokens: "refresh_tokens" | "operator_refresh_tokens";
  /** The column naming the account. */
  readonly owner: "user_id" | "operator_id";
}

/** Users' sessions. */
export const userSessionTables: SessionTables = { sessions: "sessions", refreshTokens: "refresh_tokens", owner: "user_id" };
/** Platform operators' sessions. */
export const operatorSessionTables: SessionTables = { sessions: "operator_sessions", refreshTokens: "operator_refresh_tokens", owner: "operator_id" };

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
export async function revokeSessions(em: EntityManager, events: EventPublisher, target: RevokeTarget, reason: RevokeReason, accessTokenLifetimeS: number, tables: SessionTables = userSessionTables): Promise<Revoked[]> {
  // Operator sessions keep no reason column: the event carries it.
  const set = tables.sessions === "sessions" ? "revoked_at = now(), revoke_reason = ?" : "revoked_at = now()";
  const reasonParam = tables.sessions === "sessions" ? [reason] : [];
  const rows =
    "sessionId" in target
      ? await em.execute<{ id: string; user_id: string }[]>(`update ${tables.sessions} set ${set} where id = ? and revoked_at is null returning id, ${tables.owner} as user_id`, [...reasonParam, target.sessionId])
      : await em.execute<{ id: string; user_id: string }[]>(`update ${tables.sessions} set ${set} where ${tables.owner} = ? and id <> ? and revoked_at is null returning id, ${tables.owner} as user_id`, [
          ...reasonParam,
          target.userId,
          target.exceptSessionId ?? "",
        ]);
  const validUntilUnix = Math.floor(Date.now() / 1000) + accessTokenLifetimeS + 60;
  const out: Revoked[] = [];
  for (const r of rows) {
    await em.execute(`update ${tables.refreshTokens} set used_at = coalesce(used_at, now()), expires_at = least(expires_at, now()) where session_id = ?`, [r.id]);
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
