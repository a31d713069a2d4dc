import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  AuthService,
  MfaChallengeSchema,
  PasswordChangedSchema,
  PasswordResetRequestedSchema,
  SignInFailedSchema,
  SignInResponseSchema,
  TokenPairSchema,
  UserReauthenticatedSchema,
  UserSignedInSchema,
  type ChangePasswordRequest,
  type ReauthenticateRequest,
  type RefreshTokensRequest,
  type RequestPasswordResetRequest,
  type ResetPasswordRequest,
  type SignInRequest,
  type TenancyClient,
  type TokenPair,
} from "@bulwark/contracts";
import { currentContext, describeError, failedPrecondition, invalidArgument, newId, permissionDenied, runAsPlatform, runInTenant, unauthenticated, type Logger, type Principal, type RevokedSessions } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import { outboxInsert, type EventPublisher } from "@bulwark/events";
import { checkNewPassword, historyDepth } from "./password-policy.js";
import type { PasswordHasher } from "./passwords.js";
import { enrollmentOnlyPermissions, grantsOf, permissionsOf } from "./permissions-of.js";
import { activeTenantBySlug, clientAddress, tenantPolicy, type AuthPolicy } from "./policy.js";
import { mfaMethodsOf } from "../mfa/enrolment.js";
import { droppingResetTokenSink, type ResetTokenSink } from "./reset-token-sink.js";
import { refusalLog, type RefusalLog } from "./refusals.js";
import { rememberRevoked, revokeSessions, sessionLive } from "./sessions.js";
import type { SigningKeyStore } from "./signing-keys.js";
import { accountCounter, accountRule, addressCounter, addressKey, countersSettings, resetAddressRule, resetMailRule, type Admission, type SignInThrottle, type Verdict } from "./throttle.js";
import { issueAccessToken, newOpaqueToken, tokenHash } from "./tokens.js";

/** How long an MFA challenge lasts. */
export const mfaChallengeTtlMs = 5 * 60_000;
/** How long a password reset token lasts. */
export const resetTokenTtlMs = 30 * 60_000;
/** RequestPasswordReset answers no sooner than this, whatever it found. */
export const resetAnswerFloorMs = 250;

/** What AuthService needs. */
export interface AuthServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly tenancy: TenancyClient;
  readonly keys: SigningKeyStore;
  readonly hasher: PasswordHasher;
  readonly throttle: SignInThrottle;
  /** This process's revocation set (the verifier's), updated at once on revocation. */
  readonly revoked: RevokedSessions;
  /** Where reset tokens go (the SMTP notifier, later). */
  readonly resetTokens?: ResetTokenSink;
  /** Checks TOTP codes for Reauthenticate (the mfa part's); without it a TOTP proof is refused. */
  readonly totp?: TotpChecker;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
  /** Where refused checks are logged (debug level), and work finished after the answer reports a failure. */
  readonly logger?: Logger;
  /**
   * The tenants' IP allowlists (the runtime's tenant gate). A session is
   * never started, nor refreshed, from an address outside its tenant's
   * allowlist, as the pipeline refuses the tenant's tokens from there.
   */
  readonly allowlists?: { allows(tenantId: string, ip: string | undefined): boolean };
}

interface UserRow {
  id: string;
  email: string;
  display_name: string;
  state: string;
  password_hash: string | null;
  mfa_enrolled: boolean;
}

/**
 * Spends a TOTP code of a user inside the caller's transaction (the mfa
 * part owns the secrets): "ok" once per time step, "wrong" for a wrong or
 * replayed code, "not_enrolled" without confirmed TOTP.
 */
export interface TotpChecker {
  spend(em: EntityManager, tenantId: string, userId: string, code: string): Promise<"ok" | "wrong" | "not_enrolled">;
}

/** The counter of a signed-in user's password checks (ChangePassword's, shared by Reauthenticate). */
const passwordCheckKey = (userId: string): string => `pwchange:${userId}`;

/** A user as sign-in reads them: with what issuing their tokens needs, in the same statement. */
interface SignInUser extends UserRow {
  /** A session exists for this device name and address already. */
  known_device: boolean;
  permission_epoch: number;
  roles: string[];
  custom_roles: { id: string; permissions: string[] }[];
}

/** The one answer for every failed sign-in, whatever was wrong. */
const invalidCredentials = (): Error => unauthenticated("invalid credentials");

/** A new session's descriptive fields from the request. */
/** Where a sign-in comes from, as recorded on its session. */
export interface Client {
  readonly device: string;
  readonly userAgent: string;
  readonly ip: string;
}

/** The client of a call: device name as given, user agent and address from its headers. */
export function clientOf(headers: Headers, device: string): Client {
  return { device, userAgent: (headers.get("user-agent") ?? "").slice(0, 512), ip: clientAddress(headers) };
}

function ts(d: Date) {
  return timestampFromDate(d);
}

/**
 * bulwark.identity.v1.AuthService: password sign-in, token refresh and
 * sign-out, password change and reset, and the public keys of access
 * tokens. Sign-in gives one answer for every wrong credential and spends an
 * argon2 verification on unknown users too, so neither messages nor timing
 * tell whether an account exists.
 */
export class AuthServiceImpl implements ServiceImpl<typeof AuthService> {
  readonly #d: AuthServiceDeps;
  readonly #sink: ResetTokenSink;
  readonly #afterCommit: () => void;
  readonly #log: RefusalLog;

  constructor(deps: AuthServiceDeps) {
    this.#d = deps;
    this.#sink = deps.resetTokens ?? droppingResetTokenSink;
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
    this.#log = refusalLog(deps.logger);
  }

  /**
   * Password sign-in. One statement admits the check on the account's and
   * the address's counters (RESOURCE_EXHAUSTED while either is locked;
   * concurrent checks of one account take turns) and reads the user, in
   * the tenant's scope; then the password is verified — against a dummy
   * hash when there is no such user, so both take one argon2 verification.
   * A failure is answered at once and counted afterwards (its counter
   * update, and for a real user the sign_in_failed event, are written after
   * the answer), so a wrong password and an unknown account do the same
   * work before answering. A right password clears the account's failures
   * in the statement that writes the session, unless the user has a second
   * factor: then the counter is cleared only when that factor passes
   * (VerifyMfaChallenge).
   */
  async signIn(req: SignInRequest, hctx: HandlerContext) {
    const email = req.email.trim().toLowerCase();
    const client = clientOf(hctx.requestHeader, req.device);
    const account = accountCounter(req.tenantSlug, email);
    const tenantId = await activeTenantBySlug(this.#d.tenancy, req.tenantSlug);
    // Before any check of the password: from outside the allowlist it is no oracle.
    if (tenantId !== undefined) this.refuseOutsideAllowlist(tenantId, client.ip);
    const { admission, found } = await inTenantIfAny(tenantId, () => this.#d.throttle.admitWith<SignInUser>([account, addressCounter(client.ip)], signInUserQuery({ email }, client))).catch((err: unknown) => {
      if (err instanceof ConnectError && err.code === Code.ResourceExhausted) this.#log.refused("sign-in", "locked");
      throw err;
    });
    const user = found[0];
    let settled: Promise<void> | undefined;
    try {
      const hash = user !== undefined && user.state === "ACTIVE" ? user.password_hash : null;
      const matches = hash === null ? await this.#d.hasher.verifyDummy(req.password) : await this.#d.hasher.verify(hash, req.password);
      if (tenantId === undefined || user === undefined || hash === null || !matches) {
        this.#log.refused("sign-in", tenantId === undefined ? "tenant" : hash === null ? "user" : "password", user === undefined ? {} : { userId: user.id });
        settled = this.#afterFailure(admission, tenantId, hash === null ? undefined : user?.id, client.ip);
        throw invalidCredentials();
      }
      const rehash = this.#d.hasher.needsRehash(hash) ? await this.#d.hasher.hash(req.password) : undefined;
      if (user.mfa_enrolled) {
        settled = this.#quietly(this.#d.throttle.settle(admission, ["neutral", "neutral"]));
        const challenge = await runInTenant(tenantId, () => this.#challenge(user, client, rehash, account.key));
        await settled;
        return create(SignInResponseSchema, { result: { case: "mfaChallenge", value: challenge } });
      }
      const policy = await tenantPolicy(this.#d.tenancy, tenantId);
      // From here the session's statement settles the counters (or, if it fails, settles them as nothing).
      settled = Promise.resolve();
      const tokens = await runInTenant(tenantId, () => this.#startSession(tenantId, user, client, policy, rehash, { admission, verdicts: ["passed", "neutral"] }));
      return create(SignInResponseSchema, { result: { case: "tokens", value: tokens } });
    } finally {
      // An error before the verdict (Postgres or tenancy unavailable) counts as nothing.
      settled ??= this.#quietly(this.#d.throttle.settle(admission, ["neutral", "neutral"]));
    }
  }

  /**
   * Counts a failed sign-in after its answer has gone: the counters, then —
   * for a real user — the sign_in_failed event saying whether this failure
   * locked the account. The account's next check in this process waits for
   * the counter; the caller does not.
   */
  #afterFailure(admission: Admission, tenantId: string | undefined, userId: string | undefined, ip: string): Promise<void> {
    const verdicts: Verdict[] = ["failed", "failed"];
    return this.#quietly(
      (async () => {
        // Let the answer leave first.
        await new Promise<void>((resolve) => setImmediate(resolve));
        const acct = (await this.#d.throttle.settle(admission, verdicts)).find((c) => c.key === admission.counters[0]?.key);
        if (tenantId === undefined || userId === undefined) return;
        const payload = create(SignInFailedSchema, { userId, ipAddress: ip, locked: acct?.locked ?? false });
        await runInTenant(tenantId, () => this.#write((em) => this.#d.events.publish(em, { aggregate: "user", verb: "sign_in_failed", aggregateId: userId, schema: SignInFailedSchema, payload })));
      })(),
    );
  }

  /** Work nobody waits to fail for: a failure is logged, never thrown. */
  #quietly(work: Promise<unknown>): Promise<void> {
    return work.then(
      () => undefined,
      (err: unknown) => this.#d.logger?.warn({ err: describeError(err) }, "sign-in bookkeeping failed"),
    );
  }

  async refreshTokens(req: RefreshTokensRequest): Promise<{ tokens: TokenPair }> {
    const hash = tokenHash(req.refreshToken);
    const found = await runAsPlatform("find the tenant of a presented refresh token", () =>
      this.#d.db.transaction((em) => em.execute<{ tenant_id: string }[]>("select tenant_id from refresh_tokens where hash = ?", [hash])),
    );
    const tenantId = found[0]?.tenant_id;
    if (tenantId === undefined) throw unauthenticated("the refresh token is not valid");
    this.refuseOutsideAllowlist(tenantId, currentContext()?.clientIp);
    return runInTenant(tenantId, async () => {
      const policy = await tenantPolicy(this.#d.tenancy, tenantId);
      const result = await this.#write(async (em) => {
        const used = await em.execute<{ session_id: string; expires_at: Date }[]>("update refresh_tokens set used_at = now() where hash = ? and used_at is null returning session_id, expires_at", [hash]);
        const token = used[0];
        if (token === undefined) {
          const again = await em.execute<{ session_id: string }[]>("select session_id from refresh_tokens where hash = ?", [hash]);
          const sessionId = again[0]?.session_id;
          const revoked = sessionId === undefined ? [] : await revokeSessions(em, this.#d.events, { sessionId }, "refresh_token_reused", policy.accessTokenLifetimeS);
          return { refused: true as const, revoked };
        }
        const now = new Date();
        const s = await em.execute<{ id: string; user_id: string; revoked_at: Date | null; expires_at: Date; last_seen_at: Date; idle_timeout_s: number; auth_time: Date }[]>(
          "select id, user_id, revoked_at, expires_at, last_seen_at, idle_timeout_s, auth_time from sessions where id = ? for update",
          [token.session_id],
        );
        const session = s[0];
        if (session === undefined || new Date(token.expires_at).getTime() <= now.getTime()) return { refused: true as const, revoked: [] };
        if (!sessionLive({ revokedAt: session.revoked_at, expiresAt: session.expires_at, lastSeenAt: session.last_seen_at, idleTimeoutS: session.idle_timeout_s }, now)) return { refused: true as const, revoked: [] };
        const user = (await em.execute<UserRow[]>("select id, email, display_name, state, password_hash, mfa_enrolled from users where id = ?", [session.user_id]))[0];
        if (user === undefined || user.state !== "ACTIVE") return { refused: true as const, revoked: [] };
        await em.execute("update sessions set last_seen_at = ? where id = ?", [now, session.id]);
        // Refreshing is the activity identity sees; compliance's inactive-account policy reads it.
        await em.execute("update users set last_activity_at = ? where id = ?", [now, user.id]);
        // A refresh is no new proof of who the user is: auth_time stays the session's.
        const tokens = await this.#issue(em, tenantId, user, session.id, new Date(session.expires_at), policy, now, new Date(session.auth_time));
        return { refused: false as const, tokens };
      });
      if (result.refused) {
        rememberRevoked(this.#d.revoked, result.revoked);
        throw unauthenticated("the refresh token is not valid");
      }
      return { tokens: result.tokens };
    });
  }

  async signOut(): Promise<Record<string, never>> {
    const p = caller();
    if (p.sessionId === undefined) throw failedPrecondition("the credential belongs to no session");
    const policy = await tenantPolicy(this.#d.tenancy, p.tenantId!);
    const revoked = await this.#write((em) => revokeSessions(em, this.#d.events, { sessionId: p.sessionId! }, "sign_out", policy.accessTokenLifetimeS));
    rememberRevoked(this.#d.revoked, revoked);
    return {};
  }

  async changePassword(req: ChangePasswordRequest, hctx: HandlerContext): Promise<{ revokedSessions: number }> {
    const p = caller();
    const tenantId = p.tenantId!;
    const admission = await this.#d.throttle.admit([{ key: `pwchange:${p.id}`, rule: accountRule }, addressCounter(clientAddress(hctx.requestHeader))]);
    let verdicts: Verdict[] = ["neutral", "neutral"];
    let policy: AuthPolicy, user: UserRow | undefined, history: string[];
    try {
      policy = await tenantPolicy(this.#d.tenancy, tenantId);
      ({ user, history } = await this.#d.db.transaction(async (em) => ({ user: await findUserById(em, p.id), history: await passwordHistory(em, p.id) })));
      const right = user !== undefined && user.password_hash !== null && (await this.#d.hasher.verify(user.password_hash, req.currentPassword));
      // Only wrong current passwords count towards the lock; a refused new password does not.
      verdicts = right ? ["passed", "neutral"] : ["failed", "failed"];
    } finally {
      await this.#d.throttle.settle(admission, verdicts);
    }
    if (user === undefined || user.password_hash === null || verdicts[0] !== "passed") throw unauthenticated("invalid credentials");
    await checkNewPassword({ password: req.newPassword, minLength: policy.passwordMinLength, email: user.email, displayName: user.display_name, previousHashes: [user.password_hash, ...history] }, this.#d.hasher);
    const hash = await this.#d.hasher.hash(req.newPassword);
    const revoked = await this.#write(async (em) => {
      await setPassword(em, tenantId, user, hash);
      const r = await revokeSessions(em, this.#d.events, { userId: user.id, exceptSessionId: p.sessionId }, "password_changed", policy.accessTokenLifetimeS);
      await this.#d.events.publish(em, { aggregate: "user", verb: "password_changed", aggregateId: user.id, schema: PasswordChangedSchema, payload: create(PasswordChangedSchema, { userId: user.id, reset: false }) });
      return r;
    });
    rememberRevoked(this.#d.revoked, revoked);
    return { revokedSessions: revoked.length };
  }

  async requestPasswordReset(req: RequestPasswordResetRequest, hctx: HandlerContext): Promise<Record<string, never>> {
    const started = Date.now();
    const email = req.email.trim().toLowerCase();
    const token = newOpaqueToken();
    const hash = tokenHash(token);
    const expiresAt = new Date(Date.now() + resetTokenTtlMs);
    let delivery: Parameters<ResetTokenSink["deliver"]>[0] | undefined;
    // Mail bombing: a few mails an hour per account and address; past that the same answer, and no mail.
    const allowed = await this.#d.throttle.spend([{ key: `reset:${req.tenantSlug}:${email}`, rule: resetMailRule }, { key: `reset-ip:${clientAddress(hctx.requestHeader) || "unknown"}`, rule: resetAddressRule }]).then(
      () => true,
      (err: unknown) => {
        if (err instanceof ConnectError && err.code === Code.ResourceExhausted) return false;
        throw err;
      },
    );
    const tenantId = allowed ? await activeTenantBySlug(this.#d.tenancy, req.tenantSlug) : undefined;
    if (tenantId !== undefined) {
      delivery = await runInTenant(tenantId, () =>
        this.#write(async (em) => {
          const user = await findUserByEmail(em, email);
          if (user === undefined || user.state !== "ACTIVE") return undefined;
          await em.execute("insert into password_reset_tokens (hash, tenant_id, user_id, created_at, expires_at, used_at) values (?, ?, ?, now(), ?, null)", [hash, tenantId, user.id, expiresAt]);
          await this.#d.events.publish(em, { aggregate: "user", verb: "password_reset_requested", aggregateId: user.id, schema: PasswordResetRequestedSchema, payload: create(PasswordResetRequestedSchema, { userId: user.id }) });
          return { tenantId, userId: user.id, email: user.email, displayName: user.display_name, token, expiresAt };
        }),
      );
    }
    // Delivery happens after the answer, so its duration cannot tell whether the account exists.
    if (delivery !== undefined) void this.#sink.deliver(delivery).catch(() => undefined);
    const wait = resetAnswerFloorMs - (Date.now() - started);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    return {};
  }

  async resetPassword(req: ResetPasswordRequest): Promise<Record<string, never>> {
    const hash = tokenHash(req.resetToken);
    const refused = () => failedPrecondition("the reset token is unknown, used or expired");
    const found = await runAsPlatform("find the tenant of a presented reset token", () =>
      this.#d.db.transaction((em) => em.execute<{ tenant_id: string }[]>("select tenant_id from password_reset_tokens where hash = ?", [hash])),
    );
    const tenantId = found[0]?.tenant_id;
    if (tenantId === undefined) throw refused();
    await runInTenant(tenantId, async () => {
      const policy = await tenantPolicy(this.#d.tenancy, tenantId);
      const pending = await this.#d.db.transaction(async (em) => {
        const row = (await em.execute<{ user_id: string }[]>("select user_id from password_reset_tokens where hash = ? and used_at is null and expires_at > now()", [hash]))[0];
        if (row === undefined) return undefined;
        const user = await findUserById(em, row.user_id);
        return user === undefined || user.state !== "ACTIVE" ? undefined : { user, history: await passwordHistory(em, user.id) };
      });
      if (pending === undefined) throw refused();
      const { user, history } = pending;
      await checkNewPassword({ password: req.newPassword, minLength: policy.passwordMinLength, email: user.email, displayName: user.display_name, previousHashes: user.password_hash === null ? history : [user.password_hash, ...history] }, this.#d.hasher);
      const newHash = await this.#d.hasher.hash(req.newPassword);
      const revoked = await this.#write(async (em) => {
        const consumed = await em.execute<{ user_id: string }[]>("update password_reset_tokens set used_at = now() where hash = ? and used_at is null and expires_at > now() returning user_id", [hash]);
        if (consumed.length === 0) return undefined;
        await em.execute("update password_reset_tokens set used_at = now() where user_id = ? and used_at is null", [user.id]);
        await setPassword(em, tenantId, user, newHash);
        const r = await revokeSessions(em, this.#d.events, { userId: user.id }, "password_changed", policy.accessTokenLifetimeS);
        await this.#d.events.publish(em, { aggregate: "user", verb: "password_changed", aggregateId: user.id, schema: PasswordChangedSchema, payload: create(PasswordChangedSchema, { userId: user.id, reset: true }) });
        return r;
      });
      if (revoked === undefined) throw refused();
      rememberRevoked(this.#d.revoked, revoked);
    });
    return {};
  }

  /**
   * Sudo mode: a fresh proof (password or TOTP code) inside the caller's
   * session moves its auth_time to now and returns a new pair. The proof is
   * counted like ChangePassword's (password) or the MFA code checks' (TOTP)
   * before it is checked; the session's unused refresh tokens are spent, so
   * only the new pair continues the session.
   */
  async reauthenticate(req: ReauthenticateRequest, hctx: HandlerContext): Promise<{ tokens: TokenPair }> {
    const p = caller();
    const proof = req.proof;
    if (proof.case === undefined) throw invalidArgument("proof", "a password or a totp_code is required");
    if (p.kind !== "user" || p.sessionId === undefined) throw failedPrecondition("the credential belongs to no session; sign in instead");
    const { tenantId, sessionId } = { tenantId: p.tenantId, sessionId: p.sessionId };
    const counter = proof.case === "password" ? passwordCheckKey(p.id) : `mfa:${p.id}`;
    const address = addressKey(clientAddress(hctx.requestHeader));
    await this.#d.throttle.attempt(counter, address);
    const policy = await tenantPolicy(this.#d.tenancy, tenantId);
    if (proof.case === "password") {
      const user = await this.#d.db.transaction((em) => findUserById(em, p.id));
      if (user === undefined || user.password_hash === null || !(await this.#d.hasher.verify(user.password_hash, proof.value))) throw invalidCredentials();
    }
    const outcome = await this.#write(async (em) => {
      if (proof.case === "totpCode") {
        const spent = this.#d.totp === undefined ? "not_enrolled" : await this.#d.totp.spend(em, tenantId, p.id, proof.value);
        if (spent !== "ok") return { refused: spent } as const;
      }
      const now = new Date();
      const s = (
        await em.execute<{ revoked_at: Date | null; expires_at: Date; last_seen_at: Date; idle_timeout_s: number }[]>(
          "select revoked_at, expires_at, last_seen_at, idle_timeout_s from sessions where id = ? and user_id = ? for update",
          [sessionId, p.id],
        )
      )[0];
      const user = await findUserById(em, p.id);
      if (s === undefined || !sessionLive({ revokedAt: s.revoked_at, expiresAt: s.expires_at, lastSeenAt: s.last_seen_at, idleTimeoutS: s.idle_timeout_s }, now) || user === undefined || user.state !== "ACTIVE") {
        return { refused: "ended" } as const;
      }
      await em.execute("update sessions set auth_time = ?, last_seen_at = ? where id = ?", [now, now, sessionId]);
      await em.execute("update refresh_tokens set used_at = ? where session_id = ? and used_at is null", [now, sessionId]);
      await this.#d.events.publish(em, {
        aggregate: "user",
        verb: "reauthenticated",
        aggregateId: p.id,
        schema: UserReauthenticatedSchema,
        payload: create(UserReauthenticatedSchema, { userId: p.id, sessionId, method: proof.case === "password" ? "password" : "totp" }),
      });
      return { tokens: await this.#issue(em, tenantId, user, sessionId, new Date(s.expires_at), policy, now, now) };
    });
    if ("refused" in outcome) {
      if (outcome.refused === "wrong") throw unauthenticated("the code is not valid");
      if (outcome.refused === "not_enrolled") throw failedPrecondition("TOTP is not enabled; re-authenticate with the password");
      throw unauthenticated("the session has ended");
    }
    await this.#d.throttle.succeeded(counter, address);
    return { tokens: outcome.tokens };
  }

  async getJwks(): Promise<{ jwksJson: string }> {
    return { jwksJson: await this.#d.keys.jwksJson() };
  }

  /**
   * PERMISSION_DENIED when the tenant has an IP allowlist and `ip` is
   * outside it (or unknown): the tenant's users sign in, and keep their
   * sessions, only from where their tokens would be accepted.
   */
  refuseOutsideAllowlist(tenantId: string, ip: string | undefined): void {
    if (this.#d.allowlists === undefined || this.#d.allowlists.allows(tenantId, ip === "" ? undefined : ip)) return;
    this.#log.refused("sign-in", "ip_allowlist");
    throw permissionDenied("the client address is not in the tenant's IP allowlist");
  }

  /**
   * Finishes a sign-in whose factors were checked elsewhere (an MFA challenge
   * answered with TOTP, a recovery code or a passkey; a passkey used as the
   * first factor): starts the session and issues the tokens, exactly as a
   * password sign-in does. The caller must already be inside the user's
   * tenant (`runInTenant`) and have verified every factor the user needs.
   * UNAUTHENTICATED if the user is no longer active.
   */
  async completeSignIn(tenantId: string, userId: string, client: Client): Promise<TokenPair> {
    this.refuseOutsideAllowlist(tenantId, client.ip);
    const policy = await tenantPolicy(this.#d.tenancy, tenantId);
    const query = signInUserQuery({ id: userId }, client);
    const user = (await this.#d.db.sql((sql) => sql.execute<SignInUser[]>(query.text, query.params)))[0];
    if (user === undefined || user.state !== "ACTIVE") {
      this.#log.refused("sign-in", "user", { userId });
      throw invalidCredentials();
    }
    return this.#startSession(tenantId, user, client, policy, undefined);
  }

  /**
   * Opens an MFA challenge for a user whose first factor passed (a password
   * here, or a passkey used as a first factor when the tenant asks for two).
   */
  async openMfaChallenge(userId: string, client: Client, methods: readonly string[]) {
    const user = await this.#d.db.transaction((em) => findUserById(em, userId));
    if (user === undefined) throw invalidCredentials();
    const challenge = await this.#challenge(user, client, undefined, "");
    return create(MfaChallengeSchema, { ...challenge, methods: [...methods] });
  }

  /**
   * Session, refresh token, sign-in time and event — and the sign-in's
   * counters, if `settle` is given — in one statement of one transaction
   * (everything they need was read with the user); then the access token,
   * signed after commit.
   */
  async #startSession(tenantId: string, user: SignInUser, client: Client, policy: AuthPolicy, rehash: string | undefined, settle?: { admission: Admission; verdicts: Verdict[] }): Promise<TokenPair> {
    const now = new Date();
    const sessionId = newId("ses");
    const expiresAt = new Date(now.getTime() + policy.refreshTokenLifetimeS * 1000);
    const grants = grantsOf(user.roles, user.custom_roles, user.permission_epoch);
    const enrollmentRequired = !user.mfa_enrolled && (grants.roleRequiresMfa || policy.mfaForEveryone);
    const refresh = newOpaqueToken();
    const event = this.#d.events.prepare({
      aggregate: "user",
      verb: "signed_in",
      aggregateId: user.id,
      schema: UserSignedInSchema,
      payload: create(UserSignedInSchema, { userId: user.id, sessionId, device: client.device, ipAddress: client.ip, newDevice: !user.known_device }),
    });
    const counters = settle === undefined ? undefined : this.#d.throttle.settlement(settle.admission, settle.verdicts);
    try {
      await this.#d.db.sql(
        (sql) =>
          sql.execute(
            `with ${counters === undefined ? "" : `c as (${counters.text}), `}s as (
               insert into sessions (id, tenant_id, user_id, device, user_agent, ip_address, mfa_pending, created_at, auth_time, last_seen_at, idle_timeout_s, expires_at)
               values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id),
             r as (insert into refresh_tokens (hash, session_id, tenant_id, created_at, used_at, expires_at) select ?, s.id, ?, ?, null, ? from s),
             u as (update users set last_sign_in_at = ?, last_activity_at = ?, password_hash = coalesce(?, password_hash) where id = ?),
             o as (insert into outbox ${outboxInsert.columns} values ${outboxInsert.placeholders})
             select 1`,
            [
              ...(counters?.params ?? []),
              ...[sessionId, tenantId, user.id, client.device, client.userAgent, client.ip, enrollmentRequired, now, now, now, policy.idleTimeoutS, expiresAt],
              ...[tokenHash(refresh), tenantId, now, expiresAt],
              ...[now, now, rehash ?? null, user.id],
              ...event.values,
            ],
          ),
        counters === undefined ? {} : { settings: countersSettings },
      );
    } catch (err) {
      if (settle !== undefined) await this.#quietly(this.#d.throttle.settle(settle.admission, ["neutral", "neutral"]));
      throw err;
    }
    settle?.admission.release();
    this.#afterCommit();
    const access = await issueAccessToken(
      this.#d.keys,
      { userId: user.id, tenantId, sessionId, roles: grants.roles, permissions: enrollmentRequired ? enrollmentOnlyPermissions : grants.permissions, permissionEpoch: grants.permissionEpoch, authTime: now },
      policy.accessTokenLifetimeS,
      now,
    );
    return create(TokenPairSchema, {
      accessToken: access.token,
      accessTokenExpireTime: ts(access.expiresAt),
      refreshToken: refresh,
      refreshTokenExpireTime: ts(expiresAt),
      sessionId,
      mfaEnrollmentRequired: enrollmentRequired,
    });
  }

  /** A new refresh token row and a signed access token for a session, carrying the session's authentication time. */
  async #issue(em: EntityManager, tenantId: string, user: UserRow, sessionId: string, sessionExpiresAt: Date, policy: AuthPolicy, now: Date, authTime: Date): Promise<TokenPair> {
    const grants = await permissionsOf(em, user.id);
    const enrollmentRequired = !user.mfa_enrolled && (grants.roleRequiresMfa || policy.mfaForEveryone);
    const refresh = newOpaqueToken();
    await em.execute("insert into refresh_tokens (hash, session_id, tenant_id, created_at, used_at, expires_at) values (?, ?, ?, ?, null, ?)", [tokenHash(refresh), sessionId, tenantId, now, sessionExpiresAt]);
    if (enrollmentRequired) await em.execute("update sessions set mfa_pending = true where id = ?", [sessionId]);
    const access = await issueAccessToken(
      this.#d.keys,
      { userId: user.id, tenantId, sessionId, roles: grants.roles, permissions: enrollmentRequired ? enrollmentOnlyPermissions : grants.permissions, permissionEpoch: grants.permissionEpoch, authTime },
      policy.accessTokenLifetimeS,
      now,
    );
    return create(TokenPairSchema, {
      accessToken: access.token,
      accessTokenExpireTime: ts(access.expiresAt),
      refreshToken: refresh,
      refreshTokenExpireTime: ts(sessionExpiresAt),
      sessionId,
      mfaEnrollmentRequired: enrollmentRequired,
    });
  }

  /**
   * Stores an MFA challenge (hashed, 5 minutes) with the account counter of
   * the sign-in that opened it (cleared when the second factor passes).
   * Verifying it (MfaService.VerifyMfaChallenge) turns it into a session.
   */
  async #challenge(user: UserRow, client: Client, rehash: string | undefined, accountKey: string) {
    const token = newOpaqueToken();
    const expiresAt = new Date(Date.now() + mfaChallengeTtlMs);
    const methods = await this.#write(async (em) => {
      await em.execute(
        "insert into mfa_challenges (hash, tenant_id, user_id, device, user_agent, ip_address, created_at, expires_at, used_at, account_key) values (?, current_setting('app.tenant_id'), ?, ?, ?, ?, now(), ?, null, ?)",
        [tokenHash(token), user.id, client.device, client.userAgent, client.ip, expiresAt, accountKey],
      );
      if (rehash !== undefined) await em.execute("update users set password_hash = ? where id = ?", [rehash, user.id]);
      return mfaMethodsOf(em, user.id);
    });
    return create(MfaChallengeSchema, { challengeToken: token, methods, expireTime: ts(expiresAt) });
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.#d.db.transaction(fn);
    this.#afterCommit();
    return result;
  }
}

/** The authenticated user calling (handlers behind a permission rule always have one). */
export function caller(): Principal & { tenantId: string } {
  const p = currentContext()?.principal;
  if (p === undefined || p.tenantId === undefined) throw unauthenticated();
  return p as Principal & { tenantId: string };
}

/**
 * The query of the user a sign-in names, with everything its session needs
 * — whether this device and address were seen before, the roles and the
 * custom roles' permissions — in one SELECT (run in the user's tenant).
 */
function signInUserQuery(by: { email: string } | { id: string }, client: Client): { text: string; params: unknown[] } {
  return {
    text: `select u.id, u.email, u.display_name, u.state, u.password_hash, u.mfa_enrolled, u.permission_epoch,
       exists (select 1 from sessions s where s.user_id = u.id and s.device = ? and s.ip_address = ?) as known_device,
       array(select ur.role_id from user_roles ur where ur.user_id = u.id order by ur.role_id) as roles,
       coalesce((select json_agg(json_build_object('id', r.id, 'permissions', r.permissions)) from user_roles ur join roles r on r.id = ur.role_id where ur.user_id = u.id), '[]'::json) as custom_roles
     from users u where ${"email" in by ? "u.email" : "u.id"} = ?`,
    params: [client.device, client.ip, "email" in by ? by.email : by.id],
  };
}

/** Runs `fn` in the tenant's scope, or in the caller's if there is no tenant (an unknown slug). */
function inTenantIfAny<T>(tenantId: string | undefined, fn: () => T): T {
  return tenantId === undefined ? fn() : runInTenant(tenantId, fn);
}

async function findUserByEmail(em: EntityManager, email: string): Promise<UserRow | undefined> {
  return (await em.execute<UserRow[]>("select id, email, display_name, state, password_hash, mfa_enrolled from users where email = ?", [email]))[0];
}

async function findUserById(em: EntityManager, id: string): Promise<UserRow | undefined> {
  return (await em.execute<UserRow[]>("select id, email, display_name, state, password_hash, mfa_enrolled from users where id = ?", [id]))[0];
}

async function passwordHistory(em: EntityManager, userId: string): Promise<string[]> {
  const rows = await em.execute<{ password_hash: string }[]>("select password_hash from password_history where user_id = ? order by created_at desc limit ?", [userId, historyDepth - 1]);
  return rows.map((r) => r.password_hash);
}

/** Sets a new hash, keeping the old one in the history (the last five count). */
async function setPassword(em: EntityManager, tenantId: string, user: UserRow, hash: string): Promise<void> {
  if (user.password_hash !== null) {
    await em.execute("insert into password_history (id, tenant_id, user_id, password_hash, created_at) values (?, ?, ?, ?, clock_timestamp())", [newId("pwh"), tenantId, user.id, user.password_hash]);
  }
  await em.execute("update users set password_hash = ?, updated_at = now(), version = version + 1 where id = ?", [hash, user.id]);
}

