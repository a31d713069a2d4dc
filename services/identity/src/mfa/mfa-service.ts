import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  MfaService,
  UserMfaCodesGuessedSchema,
  UserMfaDisabledSchema,
  UserMfaEnabledSchema,
  UserMfaResetSchema,
  UserRecoveryCodesViewedSchema,
  UserRecoveryCodeUsedSchema,
  type ConfirmTotpRequest,
  type DisableTotpRequest,
  type RegenerateRecoveryCodesRequest,
  type ResetUserMfaRequest,
  type TenancyClient,
  type TokenPair,
  type VerifyMfaChallengeRequest,
} from "@bulwark/contracts";
import { failedPrecondition, invalidArgument, notFound, runAsPlatform, runInTenant, unauthenticated, type Logger, type RevokedSessions } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import { refusalLog, type RefusalLog, type RefusedCheck } from "../auth/refusals.js";
import { liveMfaChallenge, whyNotLive } from "./challenges.js";
import { mfaMethodsOf, syncMfaEnrolled } from "./enrolment.js";
import type { EventPublisher } from "@bulwark/events";
import { caller, type Client } from "../auth/auth-service.js";
import { clientAddress } from "../auth/policy.js";
import { requireRecentAuthentication } from "../auth/step-up.js";
import { addressCounter, secondFactorCounter, secondFactorRule, type Counter, type SettledCounter, type SignInThrottle, type Verdict } from "../auth/throttle.js";
import { tokenHash } from "../auth/tokens.js";
import { tenantInScope } from "../users/scope.js";
import { maxAccessTokenLifetimeS, refuseMorePrivilegedTarget } from "../users/store.js";
import { reduceGrants, rememberReduced } from "../auth/grants.js";
import { newRecoveryCodes, recoveryCodeHash } from "./recovery-codes.js";
import type { KeysSealer } from "../sealing/keys-sealer.js";
import { newTotpSecret, otpauthUri } from "./totp.js";
import { confirmTotpEnrolment, resealTotp, spendTotpCode, startTotpEnrolment, totpCredentialOf, userTotp, type TotpCredentialRow } from "./totp-store.js";


/** What finishes a sign-in once its second factor passed (AuthServiceImpl). */
export interface SignInCompleter {
  completeSignIn(tenantId: string, userId: string, client: Client): Promise<TokenPair>;
}

/** What MfaService needs. */
export interface MfaServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  /** Encrypts and decrypts TOTP secrets through the keys service. */
  readonly sealer: KeysSealer;
  /** Counts wrong codes per user across every challenge and check (`mfa:<user>`), and per address. */
  readonly throttle: SignInThrottle;
  readonly signIn: SignInCompleter;
  /** This process's revocation set, told at once when a reset outdates a user's tokens. */
  readonly revoked?: RevokedSessions;
  /** Tenancy, for the reauthentication window of step-up checks. */
  readonly tenancy: Pick<TenancyClient, "getSecurityPolicy">;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
  /** The clock (tests move it). */
  readonly now?: () => number;
  /** Where refused checks are logged (debug level). */
  readonly logger?: Logger;
}

type Proof = { case: "totpCode"; value: string } | { case: "recoveryCode"; value: string };

/** The one answer for an unknown, used, expired or exhausted challenge. */
const invalidChallenge = (): Error => unauthenticated("invalid or expired challenge");
/** The one answer for a wrong or replayed code. */
const invalidCode = (): Error => unauthenticated("the code is not valid");

/**
 * bulwark.identity.v1.MfaService: TOTP enrolment, recovery codes, and the
 * second step of a sign-in. A TOTP time step is accepted once per user: the
 * last accepted step only moves forward, in one conditional UPDATE, so two
 * replicas cannot both accept a code and a code cannot be replayed. Secrets
 * are sealed at rest (SecretBox), recovery codes stored as hashes; both are
 * shown once.
 */
export class MfaServiceImpl implements ServiceImpl<typeof MfaService> {
  readonly #d: MfaServiceDeps;
  readonly #afterCommit: () => void;
  readonly #now: () => number;
  readonly #log: RefusalLog;

  constructor(deps: MfaServiceDeps) {
    this.#d = deps;
    this.#log = refusalLog(deps.logger);
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
    this.#now = deps.now ?? Date.now;
  }

  async enrollTotp() {
    const p = caller();
    const tenantId = p.tenantId;
    await this.#stepUpBesideOtherFactor(p.id);
    const secret = newTotpSecret();
    const email = await this.#d.db.transaction(async (em) => {
      const user = (await em.execute<{ email: string }[]>("select email from users where id = ?", [p.id]))[0];
      if (user === undefined) throw unauthenticated();
      const sealed = await this.#d.sealer.sealTotp({ tenantId, userId: p.id }, secret);
      if (!(await startTotpEnrolment(em, userTotp, p.id, tenantId, sealed))) throw failedPrecondition("TOTP is already enabled; disable it before enrolling again");
      return user.email;
    });
    return { secret, otpauthUri: otpauthUri(email, secret) };
  }

  async confirmTotp(req: ConfirmTotpRequest, hctx: HandlerContext) {
    const p = caller();
    await this.#stepUpBesideOtherFactor(p.id);
    const outcome = await this.#checked(p.id, hctx, () => this.#write(async (em) => {
      const confirmed = await confirmTotpEnrolment(em, userTotp, p.id, (cred) => this.#secret(em, cred, p.tenantId, p.id), req.code, this.#now());
      if (confirmed === "none_pending") throw failedPrecondition("no TOTP enrolment is pending; call EnrollTotp first");
      if (confirmed === "already_confirmed") throw failedPrecondition("TOTP is already enabled");
      if (confirmed === "wrong_code") {
        this.#log.refused("totp confirmation", "wrong_code", { userId: p.id });
        return undefined;
      }
      await em.execute("update users set mfa_enrolled = true, updated_at = now(), version = version + 1 where id = ?", [p.id]);
      const codes = await replaceRecoveryCodes(em, p.tenantId, p.id);
      await this.#d.events.publish(em, { aggregate: "user", verb: "mfa_enabled", aggregateId: p.id, schema: UserMfaEnabledSchema, payload: create(UserMfaEnabledSchema, { userId: p.id, method: "totp" }) });
      await this.#viewed(em, p.id, codes.length);
      return codes;
    }), (codes) => codes !== undefined);
    if (outcome === undefined) throw invalidArgument("code", "is not the current code of the authenticator");
    return { recoveryCodes: outcome };
  }

  /**
   * The second step of a sign-in. Wrong codes count per user across every
   * challenge (and per address), so opening a fresh challenge with the
   * password buys no more guesses: once the user's counter locks, no code is
   * checked (RESOURCE_EXHAUSTED) until the lock passes, and the user is
   * mailed (user.mfa_codes_guessed). A passed factor clears the user's code
   * counter and the account's password counter of the sign-in that opened
   * the challenge.
   */
  async verifyMfaChallenge(req: VerifyMfaChallengeRequest, hctx: HandlerContext) {
    const factor = req.factor;
    if (factor.case === undefined) throw invalidArgument("factor", "a totp_code or a recovery_code is required");
    const hash = tokenHash(req.challengeToken);
    const found = await runAsPlatform("find the tenant of a presented MFA challenge", () =>
      this.#d.db.transaction((em) => em.execute<{ tenant_id: string; user_id: string }[]>("select tenant_id, user_id from mfa_challenges where hash = ?", [hash])),
    );
    const row = found[0];
    if (row === undefined) {
      this.#log.refused("mfa challenge", "challenge_unknown");
      throw invalidChallenge();
    }
    const tenantId = row.tenant_id;
    const ip = clientAddress(hctx.requestHeader);
    const admission = await this.#d.throttle.admit(codeCounters(row.user_id, ip)).catch((err: unknown) => {
      this.#log.refused("mfa challenge", "locked", { userId: row.user_id });
      throw err;
    });
    let verdicts: Verdict[] = ["neutral", "neutral"];
    let clear: string[] = [];
    let settled: SettledCounter[] = [];
    let outcome;
    try {
      outcome = await runInTenant(tenantId, () =>
        this.#write(async (em) => {
          // The row lock serialises answers to one challenge; the attempt count is read under it.
          const challenge = await liveMfaChallenge(em, hash, { lock: true });
          if (challenge === undefined) return { result: "invalid" as const, check: await whyNotLive(em, hash) };
          const refused = await this.#spend(em, tenantId, challenge.user_id, factor);
          if (refused !== undefined) {
            await em.execute("update mfa_challenges set failed_attempts = failed_attempts + 1 where hash = ?", [hash]);
            return { result: "wrong" as const, check: refused, userId: challenge.user_id };
          }
          await em.execute("update mfa_challenges set used_at = now() where hash = ?", [hash]);
          return { result: "passed" as const, challenge };
        }),
      );
      if (outcome.result === "wrong") verdicts = ["failed", "failed"];
      if (outcome.result === "passed") {
        verdicts = ["passed", "neutral"];
        clear = outcome.challenge.account_key === "" ? [] : [outcome.challenge.account_key];
      }
    } finally {
      settled = await this.#d.throttle.settle(admission, verdicts, clear);
    }
    if (outcome.result === "invalid") {
      this.#log.refused("mfa challenge", outcome.check);
      throw invalidChallenge();
    }
    if (outcome.result === "wrong") {
      this.#log.refused("mfa challenge", outcome.check, { userId: outcome.userId });
      await this.#codesGuessed(tenantId, row.user_id, ip, settled);
      throw invalidCode();
    }
    const c = outcome.challenge;
    const tokens = await runInTenant(tenantId, () => this.#d.signIn.completeSignIn(tenantId, c.user_id, { device: c.device, userAgent: c.user_agent, ip: c.ip_address }));
    return { tokens };
  }

  async disableTotp(req: DisableTotpRequest, hctx: HandlerContext) {
    const p = caller();
    const proof = req.proof;
    if (proof.case === undefined) throw invalidArgument("proof", "a totp_code or a recovery_code is required");
    const done = await this.#checked(p.id, hctx, () => this.#write(async (em) => {
      const cred = await credentialFor(em, p.id, true);
      if (cred === undefined || cred.confirmed_at === null) throw failedPrecondition("TOTP is not enabled");
      const refused = await this.#spend(em, p.tenantId, p.id, proof);
      if (refused !== undefined) {
        this.#log.refused("disabling totp", refused, { userId: p.id });
        return false;
      }
      await removeFactors(em, p.id);
      await this.#d.events.publish(em, { aggregate: "user", verb: "mfa_disabled", aggregateId: p.id, schema: UserMfaDisabledSchema, payload: create(UserMfaDisabledSchema, { userId: p.id, method: "totp" }) });
      return true;
    }), (ok) => ok);
    if (!done) throw invalidCode();
    return {};
  }

  async regenerateRecoveryCodes(req: RegenerateRecoveryCodesRequest, hctx: HandlerContext) {
    const p = caller();
    await requireRecentAuthentication(this.#d.tenancy, "regenerating recovery codes");
    const codes = await this.#checked(p.id, hctx, () => this.#write(async (em) => {
      const cred = await credentialFor(em, p.id, true);
      if (cred === undefined || cred.confirmed_at === null) throw failedPrecondition("TOTP is not enabled");
      const refused = await this.#spend(em, p.tenantId, p.id, { case: "totpCode", value: req.totpCode });
      if (refused !== undefined) {
        this.#log.refused("regenerating recovery codes", refused, { userId: p.id });
        return undefined;
      }
      const fresh = await replaceRecoveryCodes(em, p.tenantId, p.id);
      await this.#viewed(em, p.id, fresh.length);
      return fresh;
    }), (fresh) => fresh !== undefined);
    if (codes === undefined) throw invalidCode();
    return { recoveryCodes: codes };
  }

  async getMfaStatus() {
    const p = caller();
    return this.#d.db.transaction(async (em) => {
      const cred = await credentialFor(em, p.id, false);
      const n = await em.execute<{ n: number }[]>("select count(*)::int as n from recovery_codes where user_id = ? and used_at is null", [p.id]);
      return { totpConfirmed: cred !== undefined && cred.confirmed_at !== null, totpPending: cred !== undefined && cred.confirmed_at === null, recoveryCodesRemaining: n[0]?.n ?? 0 };
    });
  }

  async resetUserMfa(req: ResetUserMfaRequest) {
    tenantInScope();
    const reduced = await this.#write(async (em) => {
      const user = await em.execute<{ id: string }[]>("select id from users where id = ? for update", [req.userId]);
      if (user.length === 0) throw notFound("user");
      await refuseMorePrivilegedTarget(em, req.userId);
      await removeFactors(em, req.userId);
      await this.#d.events.publish(em, { aggregate: "user", verb: "mfa_reset", aggregateId: req.userId, schema: UserMfaResetSchema, payload: create(UserMfaResetSchema, { userId: req.userId }) });
      // Tokens issued while the factor existed hold what a user without one may not: outdate them.
      return reduceGrants(em, this.#d.events, [req.userId], "mfa_reset", maxAccessTokenLifetimeS);
    });
    rememberReduced(this.#d.revoked, reduced);
    return {};
  }

  /**
   * Reauthenticate's TOTP proof, inside the caller's transaction: spends a
   * current code of the user (once per time step, as everywhere).
   */
  async spendTotpCode(em: EntityManager, tenantId: string, userId: string, code: string): Promise<"ok" | "wrong" | "not_enrolled"> {
    const cred = await credentialFor(em, userId, true);
    if (cred === undefined || cred.confirmed_at === null) return "not_enrolled";
    return (await this.#spend(em, tenantId, userId, { case: "totpCode", value: code })) === undefined ? "ok" : "wrong";
  }

  /**
   * Step-up for TOTP enrolment when the user already has a second factor
   * (a passkey; a confirmed TOTP is refused anyway): adding a credential
   * beside one that exists needs a recent authentication, so a stolen
   * access token cannot add the attacker's authenticator. A user without
   * any factor enrols with the token of their sign-in.
   */
  async #stepUpBesideOtherFactor(userId: string): Promise<void> {
    const methods = await this.#d.db.transaction((em) => mfaMethodsOf(em, userId));
    if (methods.length > 0) await requireRecentAuthentication(this.#d.tenancy, "enrolling TOTP beside another second factor");
  }

  /**
   * Spends a proof of the user's second factor inside the caller's
   * transaction: a TOTP code advances the last used step (atomically, so a
   * concurrent or later use of the same step fails), a recovery code is
   * marked used (and its use published). Undefined when the proof holds,
   * else the check that refused it (for the debug log).
   */
  async #spend(em: EntityManager, tenantId: string, userId: string, proof: Proof): Promise<RefusedCheck | undefined> {
    if (proof.case === "totpCode") return spendTotpCode(em, userTotp, userId, (cred) => this.#secret(em, cred, tenantId, userId), proof.value, this.#now());
    const used = await em.execute<{ user_id: string }[]>("update recovery_codes set used_at = now() where user_id = ? and code_hash = ? and used_at is null returning user_id", [userId, recoveryCodeHash(userId, proof.value)]);
    if (used.length === 0) return "wrong_code";
    const left = await em.execute<{ n: number }[]>("select count(*)::int as n from recovery_codes where user_id = ? and used_at is null", [userId]);
    await this.#d.events.publish(em, { aggregate: "user", verb: "recovery_code_used", aggregateId: userId, schema: UserRecoveryCodeUsedSchema, payload: create(UserRecoveryCodeUsedSchema, { userId, remaining: left[0]?.n ?? 0 }) });
    return undefined;
  }

  /**
   * Runs one check of a signed-in user's code under their code counter and
   * their address's: admitted first (RESOURCE_EXHAUSTED while locked), then
   * settled by `passed` — a wrong code counts a failure, a right one clears
   * the counter, and an error (no enrolment, say) counts nothing.
   */
  async #checked<T>(userId: string, hctx: HandlerContext, check: () => Promise<T>, passed: (result: T) => boolean): Promise<T> {
    const ip = clientAddress(hctx.requestHeader);
    const admission = await this.#d.throttle.admit(codeCounters(userId, ip));
    let verdicts: Verdict[] = ["neutral", "neutral"];
    let settled: SettledCounter[] = [];
    try {
      const result = await check();
      verdicts = passed(result) ? ["passed", "neutral"] : ["failed", "failed"];
      return result;
    } finally {
      settled = await this.#d.throttle.settle(admission, verdicts);
      if (verdicts[0] === "failed") await this.#codesGuessed(caller().tenantId, userId, ip, settled);
    }
  }

  /**
   * Publishes user.mfa_codes_guessed when a wrong code locked the user's
   * code counter: when the lock first starts, and for every further
   * `threshold` wrong codes — one mail per lock, never one per code.
   */
  async #codesGuessed(tenantId: string, userId: string, ip: string, settled: readonly SettledCounter[]): Promise<void> {
    const codes = settled.find((c) => c.key === secondFactorCounter(userId).key);
    if (codes === undefined || !codes.locked || (codes.failures - secondFactorRule.threshold) % secondFactorRule.threshold !== 0) return;
    const payload = create(UserMfaCodesGuessedSchema, { userId, failures: codes.failures, ipAddress: ip, ...(codes.lockedUntil !== undefined ? { lockedUntil: timestampFromDate(codes.lockedUntil) } : {}) });
    await runInTenant(tenantId, () => this.#write((em) => this.#d.events.publish(em, { aggregate: "user", verb: "mfa_codes_guessed", aggregateId: userId, schema: UserMfaCodesGuessedSchema, payload })));
  }

  /** The user's TOTP secret, decrypted through keys; a row in the interim layout is re-encrypted there now. */
  async #secret(em: EntityManager, cred: TotpCredentialRow, tenantId: string, userId: string): Promise<string> {
    const { secret, legacy } = await this.#d.sealer.openTotp({ tenantId, userId }, cred.secret_ciphertext);
    if (legacy) await resealTotp(em, userTotp, userId, cred.secret_ciphertext, await this.#d.sealer.sealTotp({ tenantId, userId }, secret));
    return secret;
  }

  async #viewed(em: EntityManager, userId: string, count: number): Promise<void> {
    await this.#d.events.publish(em, { aggregate: "user", verb: "recovery_codes_viewed", aggregateId: userId, schema: UserRecoveryCodesViewedSchema, payload: create(UserRecoveryCodesViewedSchema, { userId, count }) });
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.#d.db.transaction(fn);
    this.#afterCommit();
    return result;
  }
}

/** The counters a check of a user's code runs under: the user's codes, then the address. */
function codeCounters(userId: string, ip: string): Counter[] {
  return [secondFactorCounter(userId), addressCounter(ip)];
}

async function credentialFor(em: EntityManager, userId: string, lock: boolean): Promise<TotpCredentialRow | undefined> {
  return totpCredentialOf(em, userTotp, userId, lock);
}

/** Replaces every recovery code of a user with a new set; returns the codes (shown once). */
async function replaceRecoveryCodes(em: EntityManager, tenantId: string, userId: string): Promise<string[]> {
  await em.execute("delete from recovery_codes where user_id = ?", [userId]);
  const codes = newRecoveryCodes();
  for (const code of codes) {
    await em.execute("insert into recovery_codes (tenant_id, user_id, code_hash, used_at, created_at) values (?, ?, ?, null, now())", [tenantId, userId, recoveryCodeHash(userId, code)]);
  }
  return codes;
}

/** Removes TOTP and recovery codes; the user stays enrolled if a passkey remains. */
async function removeFactors(em: EntityManager, userId: string): Promise<void> {
  await em.execute("delete from totp_credentials where user_id = ?", [userId]);
  await em.execute("delete from recovery_codes where user_id = ?", [userId]);
  await syncMfaEnrolled(em, userId);
}
