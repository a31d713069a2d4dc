import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  OperatorDisabledSchema,
  OperatorService,
  OperatorSignedInSchema,
  SessionRevokedSchema,
  type CreateOperatorRequest,
  type DisableOperatorRequest,
  type SignInOperatorRequest,
} from "@bulwark/contracts";
import { failedPrecondition, newId, notFound, unauthenticated, type RevokedSessions } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import type { PasswordHasher } from "../auth/passwords.js";
import { clientAddress } from "../auth/policy.js";
import type { SigningKeyStore } from "../auth/signing-keys.js";
import { addressKey, type SignInThrottle } from "../auth/throttle.js";
import { asPlatform, createOperator, findOperatorByEmail, listOperators, operatorColumns, toOperator, type OperatorRecord } from "./store.js";
import { issueOperatorToken, operatorTokenLifetimeS } from "./tokens.js";

/** What OperatorService needs. */
export interface OperatorServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly keys: SigningKeyStore;
  readonly hasher: PasswordHasher;
  readonly throttle: SignInThrottle;
  /** This process's revocation set, updated at once when an operator is disabled. */
  readonly revoked: RevokedSessions;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
}

/** The throttle key of an operator account (apart from every tenant's `acct:` keys). */
export function operatorAccountKey(email: string): string {
  return `opr:${email}`;
}

/** The one answer for every failed operator sign-in. */
const invalidCredentials = (): Error => unauthenticated("invalid credentials");

/**
 * bulwark.identity.v1.OperatorService: platform operators' sign-in and
 * their management. Sign-in behaves as user sign-in does — one answer for
 * every wrong credential, an argon2 verification spent on unknown emails
 * too, and the same brute-force counters (under `opr:` keys). Every read
 * and write runs in the explicit platform scope: operator rows belong to no
 * tenant.
 */
export class OperatorServiceImpl implements ServiceImpl<typeof OperatorService> {
  readonly #d: OperatorServiceDeps;
  readonly #afterCommit: () => void;

  constructor(deps: OperatorServiceDeps) {
    this.#d = deps;
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
  }

  async signInOperator(req: SignInOperatorRequest, hctx: HandlerContext) {
    const email = req.email.trim().toLowerCase();
    const ip = clientAddress(hctx.requestHeader);
    const acct = operatorAccountKey(email);
    await this.#d.throttle.attempt(acct, addressKey(ip));
    const operator = await asPlatform("find an operator signing in", () => this.#d.db.transaction((em) => findOperatorByEmail(em, email)));
    if (operator === undefined || operator.state !== "ACTIVE") {
      await this.#d.hasher.verifyDummy(req.password);
      throw invalidCredentials();
    }
    if (!(await this.#d.hasher.verify(operator.password_hash, req.password))) throw invalidCredentials();
    await this.#d.throttle.succeeded(acct, addressKey(ip));
    const rehash = this.#d.hasher.needsRehash(operator.password_hash) ? await this.#d.hasher.hash(req.password) : undefined;
    const now = new Date();
    const sessionId = newId("ses");
    const expiresAt = new Date(now.getTime() + operatorTokenLifetimeS * 1000);
    await this.#write("start an operator session", async (em) => {
      // Disabled between the check and now: no session.
      const live = await em.execute<{ id: string }[]>("select id from operators where id = ? and state = 'ACTIVE' for update", [operator.id]);
      if (live.length === 0) throw invalidCredentials();
      await em.execute("insert into operator_sessions (id, tenant_id, operator_id, ip_address, created_at, expires_at, revoked_at) values (?, null, ?, ?, ?, ?, null)", [sessionId, operator.id, ip, now, expiresAt]);
      await em.execute(`update operators set last_sign_in_at = ?${rehash !== undefined ? ", password_hash = ?" : ""} where id = ?`, rehash !== undefined ? [now, rehash, operator.id] : [now, operator.id]);
      await this.#d.events.publish(em, { aggregate: "operator", verb: "signed_in", aggregateId: operator.id, schema: OperatorSignedInSchema, payload: create(OperatorSignedInSchema, { operatorId: operator.id, sessionId, ipAddress: ip }) });
    });
    const access = await issueOperatorToken(this.#d.keys, operator.id, sessionId, now);
    return { accessToken: access.token, accessTokenExpireTime: timestampFromDate(access.expiresAt), operatorId: operator.id, sessionId };
  }

  async createOperator(req: CreateOperatorRequest) {
    const operator = await createOperator(this.#d, { email: req.email, displayName: req.displayName, password: req.password });
    this.#afterCommit();
    return { operator };
  }

  async listOperators() {
    return { operators: await listOperators(this.#d.db) };
  }

  async disableOperator(req: DisableOperatorRequest) {
    const result = await this.#write("disable a platform operator", async (em) => {
      // Locking every active operator serializes concurrent disables, so two
      // operators cannot disable each other and leave none.
      const active = await em.execute<{ id: string }[]>("select id from operators where state = 'ACTIVE' order by id for update");
      const target = (await em.execute<OperatorRecord[]>(`select ${operatorColumns} from operators where id = ?`, [req.operatorId]))[0];
      if (target === undefined) throw notFound(`operator ${req.operatorId}`);
      if (target.state !== "ACTIVE") throw failedPrecondition("the operator is already disabled");
      if (active.length <= 1) throw failedPrecondition("the last active operator cannot be disabled; create another one first");
      const rows = await em.execute<OperatorRecord[]>(`update operators set state = 'DISABLED' where id = ? returning ${operatorColumns}`, [target.id]);
      const sessions = await em.execute<{ id: string; expires_at: Date | string }[]>(
        "update operator_sessions set revoked_at = now() where operator_id = ? and revoked_at is null and expires_at > now() returning id, expires_at",
        [target.id],
      );
      const revoked = sessions.map((s) => ({ sessionId: s.id, validUntilUnix: Math.ceil(new Date(s.expires_at).getTime() / 1000) }));
      // The same revocation event as users' sessions: every verifier in the mesh listens for it.
      for (const r of revoked) {
        await this.#d.events.publish(em, { aggregate: "session", verb: "revoked", aggregateId: r.sessionId, schema: SessionRevokedSchema, payload: create(SessionRevokedSchema, { sessionId: r.sessionId, userId: target.id, reason: "operator_disabled", validUntilUnix: BigInt(r.validUntilUnix) }) });
      }
      const operator = toOperator(rows[0]!);
      await this.#d.events.publish(em, { aggregate: "operator", verb: "disabled", aggregateId: target.id, schema: OperatorDisabledSchema, payload: create(OperatorDisabledSchema, { operator, revokedSessions: revoked.length }) });
      return { operator, revoked };
    });
    for (const r of result.revoked) this.#d.revoked.revoke(r.sessionId, r.validUntilUnix);
    return { operator: result.operator };
  }

  async #write<T>(reason: string, fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await asPlatform(reason, () => this.#d.db.transaction(fn));
    this.#afterCommit();
    return result;
  }
}
