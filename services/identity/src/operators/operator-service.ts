import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  OperatorDisabledSchema,
  OperatorEnabledSchema,
  OperatorMfaChallengeSchema,
  OperatorMfaEnabledSchema,
  OperatorService,
  OperatorSignedInSchema,
  OperatorTokensSchema,
  SignInOperatorResponseSchema,
  type ConfirmOperatorTotpRequest,
  type CreateOperatorRequest,
  type DisableOperatorRequest,
  type EnableOperatorRequest,
  type ListOperatorsRequest,
  type OperatorTokens,
  type RefreshOperatorTokensRequest,
  type ResetOperatorMfaRequest,
  type SignInOperatorRequest,
  type VerifyOperatorMfaRequest,
} from "@bulwark/contracts";
import { currentContext, failedPrecondition, invalidArgument, newId, notFound, unauthenticated, type Logger, type RevokedSessions } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { mfaChallengeTtlMs } from "../auth/auth-service.js";
import type { PasswordHasher } from "../auth/passwords.js";
import { clientAddress } from "../auth/policy.js";
import { refusalLog, type RefusalLog, type RefusedCheck } from "../auth/refusals.js";
import { operatorSessionTables, rememberRevoked, revokeSessions, type Revoked } from "../auth/sessions.js";
import type { SigningKeyStore } from "../auth/signing-keys.js";
import { addressKey, type SignInThrottle } from "../auth/throttle.js";
import { newOpaqueToken, tokenHash } from "../auth/tokens.js";
import { maxChallengeAttempts, whyNotLive } from "../mfa/challenges.js";
import type { KeysSealer } from "../sealing/keys-sealer.js";
import { newTotpSecret, otpauthUri } from "../mfa/totp.js";
import { confirmTotpEnrolment, operatorTotp, resealTotp, spendTotpCode, startTotpEnrolment, type TotpCredentialRow } from "../mfa/totp-store.js";
import { asPlatform, createOperator, findOperatorByEmail, listOperatorsPage, operatorColumns, resetOperatorMfa, toOperator, type OperatorRecord } from "./store.js";
import { issueOperatorToken, operatorEnrollmentOnlyPermissions, operatorPermissions, operatorSessionLifetimeS, operatorTokenLifetimeS } from "./tokens.js";

/** What OperatorService needs. */
export interface OperatorServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly keys: SigningKeyStore;
  readonly hasher: PasswordHasher;
  readonly throttle: SignInThrottle;
  /** Seals operators' TOTP secrets (the same box as users', bound to "platform" and the operator). */
  /** Encrypts and decrypts operators' TOTP secrets through the keys service (identity's own ring). */
  readonly sealer: KeysSealer;
  /** This process's revocation set, updated at once when an operator session ends. */
  readonly revoked: RevokedSessions;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
  /** Where refused checks are logged (debug level). */
  readonly logger?: Logger;
  /** The clock (tests move it). */
  readonly now?: () => number;
}

/** The throttle key of an operator account (apart from every tenant's `acct:` keys). */
export function operatorAccountKey(email: string): string {
  return `opr:${email}`;
}

/** The throttle key of an operator's wrong codes, across challenges. */
export function operatorMfaKey(operatorId: string): string {
  return `mfa:${operatorId}`;
}


/** The one answer for every failed operator sign-in, second factor or refresh. */
const invalidCredentials = (): Error => unauthenticated("invalid credentials");
const invalidRefresh = (): Error => unauthenticated("the refresh token is not valid");

/** The signed-in operator calling (SignOutOperator, the TOTP enrolment RPCs). */
function operatorCaller(): { id: string; sessionId: string } {
  const p = currentContext()?.principal;
  if (p === undefined || p.kind !== "operator" || p.sessionId === undefined) throw failedPrecondition("the credential belongs to no operator session");
  return { id: p.id, sessionId: p.sessionId };
}

/**
 * bulwark.identity.v1.OperatorService: platform operators' sign-in with a
 * second factor, refresh and sign-out, their TOTP enrolment, and their
 * management. Sign-in behaves as user sign-in does — one answer for every
 * wrong credential, an argon2 verification spent on unknown emails too, the
 * same brute-force counters (under `opr:` keys, cleared only once the
 * second factor passes) — and reuses users' pieces: the TOTP rules
 * (mfa/totp-store.ts), session revocation (auth/sessions.ts) and the
 * refusal log. Every read and write runs in the explicit platform scope:
 * operator rows belong to no tenant.
 */
export class OperatorServiceImpl implements ServiceImpl<typeof OperatorService> {
  readonly #d: OperatorServiceDeps;
  readonly #afterCommit: () => void;
  readonly #log: RefusalLog;
  readonly #now: () => number;

  constructor(deps: OperatorServiceDeps) {
    this.#d = deps;
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
    this.#log = refusalLog(deps.logger);
    this.#now = deps.now ?? Date.now;
  }

  async signInOperator(req: SignInOperatorRequest, hctx: HandlerContext) {
    const email = req.email.trim().toLowerCase();
    const ip = clientAddress(hctx.requestHeader);
    const acct = operatorAccountKey(email);
    await this.#d.throttle.attempt(acct, addressKey(ip)).catch((err: unknown) => {
      this.#log.refused("operator sign-in", "locked");
      throw err;
    });
    const operator = await asPlatform("find an operator signing in", () => this.#d.db.transaction((em) => findOperatorByEmail(em, email)));
    if (operator === undefined || operator.state !== "ACTIVE") {
      await this.#d.hasher.verifyDummy(req.password);
      this.#log.refused("operator sign-in", "user", operator === undefined ? {} : { operatorId: operator.id });
      throw invalidCredentials();
    }
    if (!(await this.#d.hasher.verify(operator.password_hash, req.password))) {
      this.#log.refused("operator sign-in", "password", { operatorId: operator.id });
      throw invalidCredentials();
    }
    const rehash = this.#d.hasher.needsRehash(operator.password_hash) ? await this.#d.hasher.hash(req.password) : undefined;
    if (operator.mfa_enrolled) {
      // The account's counter is cleared only when the code passes too.
      const token = newOpaqueToken();
      const expiresAt = new Date(this.#now() + mfaChallengeTtlMs);
      await this.#write("open an operator MFA challenge", async (em) => {
        await em.execute("insert into operator_mfa_challenges (hash, tenant_id, operator_id, ip_address, created_at, expires_at, used_at, failed_attempts) values (?, null, ?, ?, now(), ?, null, 0)", [tokenHash(token), operator.id, ip, expiresAt]);
        if (rehash !== undefined) await em.execute("update operators set password_hash = ? where id = ?", [rehash, operator.id]);
      });
      return create(SignInOperatorResponseSchema, { mfaChallenge: create(OperatorMfaChallengeSchema, { challengeToken: token, methods: ["totp"], expireTime: timestampFromDate(expiresAt) }) });
    }
    await this.#d.throttle.succeeded(acct, addressKey(ip));
    // No second factor yet: a session that can only enrol one.
    const tokens = await this.#startSession(operator.id, ip, true, rehash);
    return create(SignInOperatorResponseSchema, {
      accessToken: tokens.accessToken,
      accessTokenExpireTime: tokens.accessTokenExpireTime,
      operatorId: tokens.operatorId,
      sessionId: tokens.sessionId,
      refreshToken: tokens.refreshToken,
      refreshTokenExpireTime: tokens.refreshTokenExpireTime,
      mfaEnrollmentRequired: true,
    });
  }

  async verifyOperatorMfa(req: VerifyOperatorMfaRequest, hctx: HandlerContext) {
    const hash = tokenHash(req.challengeToken);
    const ip = clientAddress(hctx.requestHeader);
    const found = await asPlatform("find the operator of an MFA challenge", () =>
      this.#d.db.transaction((em) => em.execute<{ operator_id: string; email: string }[]>("select c.operator_id, o.email from operator_mfa_challenges c join operators o on o.id = c.operator_id where c.hash = ?", [hash])),
    );
    const owner = found[0];
    if (owner === undefined) return this.#refuse("operator mfa challenge", "challenge_unknown");
    await this.#d.throttle.attempt(operatorMfaKey(owner.operator_id), addressKey(ip)).catch((err: unknown) => {
      this.#log.refused("operator mfa challenge", "locked", { operatorId: owner.operator_id });
      throw err;
    });
    const outcome = await this.#write("answer an operator MFA challenge", async (em): Promise<{ refused: RefusedCheck } | { refused: undefined }> => {
      // The row lock serialises answers to one challenge; the attempt count is read under it.
      const live = await em.execute<{ operator_id: string }[]>(
        "select operator_id from operator_mfa_challenges where hash = ? and used_at is null and expires_at > now() and failed_attempts < ? for update",
        [hash, maxChallengeAttempts],
      );
      if (live.length === 0) return { refused: await whyNotLive(em, hash, "operator_mfa_challenges") };
      const active = await em.execute<{ id: string }[]>("select id from operators where id = ? and state = 'ACTIVE'", [owner.operator_id]);
      if (active.length === 0) return { refused: "user" };
      const refused = await spendTotpCode(em, operatorTotp, owner.operator_id, (cred) => this.#secret(em, cred, owner.operator_id), req.totpCode, this.#now());
      if (refused !== undefined) {
        await em.execute("update operator_mfa_challenges set failed_attempts = failed_attempts + 1 where hash = ?", [hash]);
        return { refused };
      }
      await em.execute("update operator_mfa_challenges set used_at = now() where hash = ?", [hash]);
      return { refused: undefined };
    });
    if (outcome.refused !== undefined) return this.#refuse("operator mfa challenge", outcome.refused, owner.operator_id);
    await this.#d.throttle.succeeded(operatorMfaKey(owner.operator_id), addressKey(ip));
    await this.#d.throttle.succeeded(operatorAccountKey(owner.email), addressKey(ip));
    return { tokens: await this.#startSession(owner.operator_id, ip, false, undefined) };
  }

  async refreshOperatorTokens(req: RefreshOperatorTokensRequest) {
    const hash = tokenHash(req.refreshToken);
    const result = await this.#write("refresh an operator's tokens", async (em): Promise<{ tokens: OperatorTokens } | { revoked: Revoked[] }> => {
      const used = await em.execute<{ session_id: string; expires_at: Date }[]>("update operator_refresh_tokens set used_at = now() where hash = ? and used_at is null returning session_id, expires_at", [hash]);
      const token = used[0];
      if (token === undefined) {
        // A used token again: someone holds a copy, so the session ends.
        const again = await em.execute<{ session_id: string }[]>("select session_id from operator_refresh_tokens where hash = ?", [hash]);
        const sessionId = again[0]?.session_id;
        return { revoked: sessionId === undefined ? [] : await revokeSessions(em, this.#d.events, { sessionId }, "refresh_token_reused", operatorTokenLifetimeS, operatorSessionTables) };
      }
      const now = new Date(this.#now());
      const session = (
        await em.execute<{ id: string; operator_id: string; revoked_at: Date | null; expires_at: Date }[]>("select id, operator_id, revoked_at, expires_at from operator_sessions where id = ? for update", [token.session_id])
      )[0];
      if (session === undefined || session.revoked_at !== null || new Date(session.expires_at).getTime() <= now.getTime() || new Date(token.expires_at).getTime() <= now.getTime()) return { revoked: [] };
      const operator = (await em.execute<OperatorRecord[]>(`select ${operatorColumns} from operators where id = ?`, [session.operator_id]))[0];
      if (operator === undefined || operator.state !== "ACTIVE") return { revoked: [] };
      // An enrolment-only session becomes a full one once the operator has a second factor.
      const enrollmentOnly = !operator.mfa_enrolled;
      await em.execute("update operator_sessions set mfa_pending = ? where id = ?", [enrollmentOnly, session.id]);
      return { tokens: await this.#issue(em, operator.id, session.id, new Date(session.expires_at), enrollmentOnly, now) };
    });
    if ("revoked" in result) {
      rememberRevoked(this.#d.revoked, result.revoked);
      throw invalidRefresh();
    }
    return { tokens: result.tokens };
  }

  async signOutOperator() {
    const me = operatorCaller();
    const revoked = await this.#write("sign an operator out", (em) => revokeSessions(em, this.#d.events, { sessionId: me.sessionId }, "sign_out", operatorTokenLifetimeS, operatorSessionTables));
    rememberRevoked(this.#d.revoked, revoked);
    return {};
  }

  async enrollOperatorTotp() {
    const me = operatorCaller();
    const secret = newTotpSecret();
    const email = await this.#write("start an operator's TOTP enrolment", async (em) => {
      const operator = (await em.execute<{ email: string; state: string }[]>("select email, state from operators where id = ?", [me.id]))[0];
      if (operator === undefined || operator.state !== "ACTIVE") throw failedPrecondition("the caller is not an active operator");
      const sealed = await this.#d.sealer.sealTotp({ operatorId: me.id }, secret);
      if (!(await startTotpEnrolment(em, operatorTotp, me.id, null, sealed))) throw failedPrecondition("TOTP is already enabled; another operator must reset it (ResetOperatorMfa) before enrolling again");
      return operator.email;
    });
    return { secret, otpauthUri: otpauthUri(email, secret) };
  }

  async confirmOperatorTotp(req: ConfirmOperatorTotpRequest, hctx: HandlerContext) {
    const me = operatorCaller();
    const keys = [operatorMfaKey(me.id), addressKey(clientAddress(hctx.requestHeader))] as const;
    await this.#d.throttle.attempt(...keys);
    const outcome = await this.#write("confirm an operator's TOTP", async (em) => {
      const confirmed = await confirmTotpEnrolment(em, operatorTotp, me.id, (cred) => this.#secret(em, cred, me.id), req.code, this.#now());
      if (confirmed === "none_pending") throw failedPrecondition("no TOTP enrolment is pending; call EnrollOperatorTotp first");
      if (confirmed === "already_confirmed") throw failedPrecondition("TOTP is already enabled");
      if (confirmed === "wrong_code") return false;
      await em.execute("update operators set mfa_enrolled = true where id = ?", [me.id]);
      await this.#d.events.publish(em, { aggregate: "operator", verb: "mfa_enabled", aggregateId: me.id, schema: OperatorMfaEnabledSchema, payload: create(OperatorMfaEnabledSchema, { operatorId: me.id, method: "totp" }) });
      return true;
    });
    if (!outcome) {
      this.#log.refused("operator totp confirmation", "wrong_code", { operatorId: me.id });
      throw invalidArgument("code", "is not the current code of the authenticator");
    }
    await this.#d.throttle.succeeded(...keys);
    return {};
  }

  async createOperator(req: CreateOperatorRequest) {
    const operator = await createOperator(this.#d, { email: req.email, displayName: req.displayName, password: req.password });
    this.#afterCommit();
    return { operator };
  }

  async listOperators(req: ListOperatorsRequest) {
    return listOperatorsPage(this.#d.db, req.pageSize, req.pageToken);
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
      // The same revocation event as users' sessions: every verifier in the mesh listens for it.
      const revoked = await revokeSessions(em, this.#d.events, { userId: target.id }, "operator_disabled", operatorTokenLifetimeS, operatorSessionTables);
      const operator = toOperator(rows[0]!);
      await this.#d.events.publish(em, { aggregate: "operator", verb: "disabled", aggregateId: target.id, schema: OperatorDisabledSchema, payload: create(OperatorDisabledSchema, { operator, revokedSessions: revoked.length }) });
      return { operator, revoked };
    });
    rememberRevoked(this.#d.revoked, result.revoked);
    return { operator: result.operator };
  }

  async enableOperator(req: EnableOperatorRequest) {
    const operator = await this.#write("enable a platform operator", async (em) => {
      const target = (await em.execute<OperatorRecord[]>(`select ${operatorColumns} from operators where id = ? for update`, [req.operatorId]))[0];
      if (target === undefined) throw notFound(`operator ${req.operatorId}`);
      if (target.state === "ACTIVE") throw failedPrecondition("the operator is already active");
      const rows = await em.execute<OperatorRecord[]>(`update operators set state = 'ACTIVE' where id = ? returning ${operatorColumns}`, [target.id]);
      const enabled = toOperator(rows[0]!);
      await this.#d.events.publish(em, { aggregate: "operator", verb: "enabled", aggregateId: target.id, schema: OperatorEnabledSchema, payload: create(OperatorEnabledSchema, { operator: enabled }) });
      return enabled;
    });
    return { operator };
  }

  async resetOperatorMfa(req: ResetOperatorMfaRequest) {
    const p = currentContext()?.principal;
    if (p?.kind === "operator" && p.id === req.operatorId) throw failedPrecondition("an operator cannot reset their own second factor; another operator must");
    const { operator, revoked } = await resetOperatorMfa(this.#d, req.operatorId);
    rememberRevoked(this.#d.revoked, revoked);
    this.#afterCommit();
    return { operator };
  }

  /** A new session with its first refresh token and signed_in event; then its tokens. */
  async #startSession(operatorId: string, ip: string, enrollmentOnly: boolean, rehash: string | undefined): Promise<OperatorTokens> {
    return this.#write("start an operator session", async (em) => {
      // Disabled between the check and now: no session.
      const live = await em.execute<{ id: string }[]>("select id from operators where id = ? and state = 'ACTIVE' for update", [operatorId]);
      if (live.length === 0) throw invalidCredentials();
      const now = new Date(this.#now());
      const sessionId = newId("ses");
      const expiresAt = new Date(now.getTime() + operatorSessionLifetimeS * 1000);
      await em.execute("insert into operator_sessions (id, tenant_id, operator_id, ip_address, created_at, expires_at, revoked_at, mfa_pending) values (?, null, ?, ?, ?, ?, null, ?)", [
        sessionId,
        operatorId,
        ip,
        now,
        expiresAt,
        enrollmentOnly,
      ]);
      await em.execute(`update operators set last_sign_in_at = ?${rehash !== undefined ? ", password_hash = ?" : ""} where id = ?`, rehash !== undefined ? [now, rehash, operatorId] : [now, operatorId]);
      await this.#d.events.publish(em, { aggregate: "operator", verb: "signed_in", aggregateId: operatorId, schema: OperatorSignedInSchema, payload: create(OperatorSignedInSchema, { operatorId, sessionId, ipAddress: ip }) });
      return this.#issue(em, operatorId, sessionId, expiresAt, enrollmentOnly, now);
    });
  }

  /** A refresh token row and a signed access token (never outliving the session). */
  async #issue(em: EntityManager, operatorId: string, sessionId: string, sessionExpiresAt: Date, enrollmentOnly: boolean, now: Date): Promise<OperatorTokens> {
    const refresh = newOpaqueToken();
    await em.execute("insert into operator_refresh_tokens (hash, tenant_id, session_id, created_at, used_at, expires_at) values (?, null, ?, ?, null, ?)", [tokenHash(refresh), sessionId, now, sessionExpiresAt]);
    const lifetimeS = Math.max(1, Math.min(operatorTokenLifetimeS, Math.floor((sessionExpiresAt.getTime() - now.getTime()) / 1000)));
    const access = await issueOperatorToken(this.#d.keys, operatorId, sessionId, now, lifetimeS, enrollmentOnly ? operatorEnrollmentOnlyPermissions : operatorPermissions);
    return create(OperatorTokensSchema, {
      accessToken: access.token,
      accessTokenExpireTime: timestampFromDate(access.expiresAt),
      refreshToken: refresh,
      refreshTokenExpireTime: timestampFromDate(sessionExpiresAt),
      operatorId,
      sessionId,
      mfaEnrollmentRequired: enrollmentOnly,
    });
  }

  /** The operator's TOTP secret, decrypted through keys; a row in the interim layout is re-encrypted there now. */
  async #secret(em: EntityManager, cred: TotpCredentialRow, operatorId: string): Promise<string> {
    const { secret, legacy } = await this.#d.sealer.openTotp({ operatorId }, cred.secret_ciphertext);
    if (legacy) await resealTotp(em, operatorTotp, operatorId, cred.secret_ciphertext, await this.#d.sealer.sealTotp({ operatorId }, secret));
    return secret;
  }

  /** Refuses with the one answer, logging which check failed. */
  #refuse(what: string, check: RefusedCheck, operatorId?: string): never {
    this.#log.refused(what, check, operatorId === undefined ? {} : { operatorId });
    throw invalidCredentials();
  }

  async #write<T>(reason: string, fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await asPlatform(reason, () => this.#d.db.transaction(fn));
    this.#afterCommit();
    return result;
  }
}
