import type { ServiceImpl } from "@connectrpc/connect";
import type { SessionService, TenancyClient } from "@bulwark/contracts";
import { decodeCursor, encodeCursor, hasPermission, notFound, permissionDenied, type RevokedSessions } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { SessionEntity } from "../entities/session.entity.js";
import { tenantInScope } from "../users/scope.js";
import { refuseMorePrivilegedTarget } from "../users/store.js";
import { caller } from "./auth-service.js";
import { tenantPolicy } from "./policy.js";
import { rememberRevoked, revokeSessions, sessionLive, sessionToProto } from "./sessions.js";

/** What SessionService needs. */
export interface SessionServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly tenancy: TenancyClient;
  readonly revoked: RevokedSessions;
  readonly afterCommit?: () => void;
}

/**
 * bulwark.identity.v1.SessionService: a user's own sessions and an
 * administrator's view of others'. Every revocation publishes
 * SessionRevoked, which every service's verifier obeys within a second.
 */
export class SessionServiceImpl implements ServiceImpl<typeof SessionService> {
  readonly #d: SessionServiceDeps;

  constructor(deps: SessionServiceDeps) {
    this.#d = deps;
  }

  async listMySessions() {
    const p = caller();
    return { sessions: await this.#list(p.id, p.sessionId) };
  }

  async listUserSessions(req: { userId: string }) {
    const p = caller();
    await this.#requireUser(req.userId);
    return { sessions: await this.#list(req.userId, p.sessionId) };
  }

  /**
   * Every live session of the tenant, oldest first (keyset on created_at,
   * id): the evidence collectors' view, one page per call instead of one
   * call per user.
   */
  async listTenantSessions(req: { pageSize: number; pageToken: string }) {
    tenantInScope();
    const pageSize = req.pageSize === 0 ? 100 : req.pageSize;
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, "tenant_sessions", "ses_");
    const now = new Date();
    const rows = await this.#d.db.transaction((em) =>
      em.find(
        SessionEntity,
        { revokedAt: null, expiresAt: { $gt: now }, ...(cursor ? { $or: [{ createdAt: { $gt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { $gt: cursor.id } }] } : {}) },
        { orderBy: [{ createdAt: "asc" }, { id: "asc" }], limit: pageSize + 1 },
      ),
    );
    const page = rows.slice(0, pageSize);
    const last = page.at(-1);
    const nextPageToken = rows.length > pageSize && last !== undefined ? encodeCursor({ createdAt: new Date(last.createdAt), id: last.id, filter: "tenant_sessions" }) : "";
    return { sessions: page.filter((s) => sessionLive(s, now)).map((s) => sessionToProto(s, undefined)), nextPageToken };
  }

  async revokeSession(req: { sessionId: string }) {
    const p = caller();
    const owner = await this.#d.db.transaction(async (em) => (await em.execute<{ user_id: string }[]>("select user_id from sessions where id = ?", [req.sessionId]))[0]?.user_id);
    if (owner === undefined) throw notFound("session");
    if (owner !== p.id && !hasPermission(p, "identity.sessions.revoke")) throw permissionDenied("missing permission identity.sessions.revoke to end another user's session");
    await this.#revoke(async (em, lifetimeS) => {
      if (owner !== p.id) await refuseMorePrivilegedTarget(em, owner);
      return revokeSessions(em, this.#d.events, { sessionId: req.sessionId }, owner === p.id ? "sign_out" : "revoked", lifetimeS);
    });
    return {};
  }

  async revokeAllSessions(req: { userId: string }) {
    await this.#requireUser(req.userId);
    const n = await this.#revoke(async (em, lifetimeS) => {
      await refuseMorePrivilegedTarget(em, req.userId);
      return revokeSessions(em, this.#d.events, { userId: req.userId }, "revoked", lifetimeS);
    });
    return { revokedSessions: n };
  }

  async #revoke(fn: (em: EntityManager, lifetimeS: number) => ReturnType<typeof revokeSessions>): Promise<number> {
    const policy = await tenantPolicy(this.#d.tenancy, caller().tenantId);
    const revoked = await this.#d.db.transaction((em) => fn(em, policy.accessTokenLifetimeS));
    this.#d.afterCommit?.();
    rememberRevoked(this.#d.revoked, revoked);
    return revoked.length;
  }

  async #requireUser(userId: string): Promise<void> {
    const rows = await this.#d.db.transaction((em) => em.execute<{ id: string }[]>("select id from users where id = ?", [userId]));
    if (rows.length === 0) throw notFound("user");
  }

  async #list(userId: string, currentSessionId: string | undefined) {
    const now = new Date();
    const rows = await this.#d.db.transaction((em) => em.find(SessionEntity, { userId, revokedAt: null, expiresAt: { $gt: now } }, { orderBy: [{ createdAt: "desc" }, { id: "desc" }] }));
    return rows.filter((s) => sessionLive(s, now)).map((s) => sessionToProto(s, currentSessionId));
  }
}
