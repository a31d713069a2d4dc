import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  FinishPasskeySignInResponseSchema,
  PasskeyCloneSuspectedSchema,
  PasskeySchema,
  UserPasskeyAddedSchema,
  UserPasskeyRemovedSchema,
  UserPasskeyRenamedSchema,
  type BeginPasskeySignInRequest,
  type FinishPasskeyRegistrationRequest,
  type FinishPasskeySignInRequest,
  type Passkey,
  type PasskeyService,
  type RemovePasskeyRequest,
  type RenamePasskeyRequest,
  type TenancyClient,
} from "@bulwark/contracts";
import { failedPrecondition, invalidArgument, newId, notFound, runAsPlatform, runInTenant, unauthenticated, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import { syncMfaEnrolled } from "../mfa/enrolment.js";
import { liveMfaChallenge, maxChallengeAttempts, whyNotLive } from "../mfa/challenges.js";
import { refusalLog, webAuthnCheckOf, type RefusalLog, type RefusedCheck } from "../auth/refusals.js";
import type { EventPublisher } from "@bulwark/events";
import { generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse } from "@simplewebauthn/server";
import { caller, clientOf, type AuthServiceImpl, type Client } from "../auth/auth-service.js";
import { activeTenantBySlug, clientAddress } from "../auth/policy.js";
import { requireRecentAuthentication } from "../auth/step-up.js";
import { addressCounter, passkeyBeginRule, passkeyTenantRule, type SignInThrottle, type Verdict } from "../auth/throttle.js";
import { tokenHash } from "../auth/tokens.js";
import type { WebAuthnConfig } from "./config.js";
import { cleanTransports, counterAdvances, MalformedWebAuthnResponse, parseAuthenticationResponse, parseRegistrationResponse, webAuthnChallengeTtlMs } from "./webauthn.js";

/** What PasskeyService needs. */
export interface PasskeyServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly tenancy: TenancyClient;
  readonly webauthn: WebAuthnConfig;
  /** Finishes sign-ins (sessions and tokens are AuthService's). */
  readonly auth: Pick<AuthServiceImpl, "completeSignIn" | "openMfaChallenge">;
  /** Limits ceremonies begun per address and tenant, and counts refused assertions per address. */
  readonly throttle: SignInThrottle;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
  /** Where refused checks are logged (debug level). */
  readonly logger?: Logger;
}

interface PasskeyDbRow {
  id: string;
  user_id: string;
  credential_id: string;
  public_key: Buffer;
  counter: string | number;
  transports: string[];
  name: string;
  created_at: Date;
  last_used_at: Date | null;
}

const passkeyColumns = "id, user_id, credential_id, public_key, counter, transports, name, created_at, last_used_at";

/** The one answer for every failed passkey sign-in, whatever was wrong. */
const invalidCredentials = (): ConnectError => unauthenticated("invalid credentials");

function toProto(r: PasskeyDbRow): Passkey {
  return create(PasskeySchema, {
    id: r.id,
    name: r.name,
    credentialId: r.credential_id,
    transports: r.transports,
    createTime: timestampFromDate(new Date(r.created_at)),
    lastUsedTime: r.last_used_at === null ? undefined : timestampFromDate(new Date(r.last_used_at)),
  });
}

/**
 * bulwark.identity.v1.PasskeyService: WebAuthn passkeys, registered by their
 * user and used to sign in — alone when the authenticator verified the user
 * (phishing-resistant MFA in one step), or as the second factor of a
 * password sign-in. Challenges are stored as hashes, single use and short
 * lived; sign-in failures all get one answer.
 */
export class PasskeyServiceImpl implements ServiceImpl<typeof PasskeyService> {
  readonly #d: PasskeyServiceDeps;
  readonly #afterCommit: () => void;
  readonly #log: RefusalLog;

  constructor(deps: PasskeyServiceDeps) {
    this.#d = deps;
    this.#log = refusalLog(deps.logger);
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
  }

  async beginPasskeyRegistration() {
    const p = caller();
    await requireRecentAuthentication(this.#d.tenancy, "registering a passkey");
    const { rpId, rpName } = this.#d.webauthn;
    const { user, existing } = await this.#d.db.transaction(async (em) => ({
      user: (await em.execute<{ id: string; email: string; display_name: string; state: string }[]>("select id, email, display_name, state from users where id = ?", [p.id]))[0],
      existing: await em.execute<{ credential_id: string; transports: string[] }[]>("select credential_id, transports from passkeys where user_id = ?", [p.id]),
    }));
    if (user === undefined || user.state !== "ACTIVE") throw failedPrecondition("passkeys belong to active users of the tenant");
    const options = await generateRegistrationOptions({
      rpName,
      rpID: rpId,
      userName: user.email,
      userDisplayName: user.display_name,
      userID: new TextEncoder().encode(user.id),
      attestationType: "none",
      timeout: webAuthnChallengeTtlMs,
      excludeCredentials: existing.map((c) => ({ id: c.credential_id, transports: c.transports })),
      authenticatorSelection: { residentKey: "preferred", userVerification: "preferred" },
    });
    const expiresAt = new Date(Date.now() + webAuthnChallengeTtlMs);
    await this.#d.db.transaction((em) =>
      em.execute("insert into webauthn_challenges (hash, tenant_id, user_id, kind, created_at, expires_at, used_at) values (?, ?, ?, 'registration', now(), ?, null)", [tokenHash(options.challenge), p.tenantId, p.id, expiresAt]),
    );
    return { optionsJson: JSON.stringify(options) };
  }

  async finishPasskeyRegistration(req: FinishPasskeyRegistrationRequest) {
    const p = caller();
    // Checked again here, where the credential is added: a stolen token must not finish what it could not begin.
    await requireRecentAuthentication(this.#d.tenancy, "registering a passkey");
    const name = req.name.trim();
    if (name === "") throw invalidArgument("name", "must not be blank");
    const parsed = this.#parse("passkey registration", () => parseRegistrationResponse(req.responseJson));
    const consumed = await this.#d.db.transaction((em) =>
      em.execute<{ hash: string }[]>("update webauthn_challenges set used_at = now() where hash = ? and kind = 'registration' and user_id = ? and used_at is null and expires_at > now() returning hash", [
        tokenHash(parsed.challenge),
        p.id,
      ]),
    );
    if (consumed.length === 0) {
      this.#log.refused("passkey registration", "challenge", { userId: p.id });
      throw invalidArgument("response_json", "the challenge is unknown, used or expired");
    }
    const { rpId, origins } = this.#d.webauthn;
    let info;
    try {
      const v = await verifyRegistrationResponse({ response: parsed.response, expectedChallenge: parsed.challenge, expectedOrigin: [...origins], expectedRPID: rpId, requireUserVerification: false });
      if (!v.verified) throw new Error("not verified");
      info = v.registrationInfo;
    } catch (err) {
      this.#log.refused("passkey registration", webAuthnCheckOf(err), { userId: p.id });
      throw new ConnectError("response_json: the registration does not verify", Code.InvalidArgument, undefined, undefined, err);
    }
    const row = await this.#write(async (em) => {
      const id = newId("pk");
      const cred = info.credential;
      const inserted = await em.execute<PasskeyDbRow[]>(
        `insert into passkeys (id, tenant_id, user_id, credential_id, public_key, counter, transports, name, created_at, last_used_at)
         values (?, ?, ?, ?, ?, ?, string_to_array(?, ','), ?, now(), null) returning ${passkeyColumns}`,
        [id, p.tenantId, p.id, cred.id, Buffer.from(cred.publicKey), cred.counter, cleanTransports(cred.transports ?? parsed.response.response.transports).join(","), name],
      );
      const enrolled = await em.execute<{ id: string }[]>("update users set mfa_enrolled = true, updated_at = now(), version = version + 1 where id = ? and not mfa_enrolled returning id", [p.id]);
      await this.#d.events.publish(em, {
        aggregate: "user",
        verb: "passkey_added",
        aggregateId: p.id,
        schema: UserPasskeyAddedSchema,
        payload: create(UserPasskeyAddedSchema, { userId: p.id, passkeyId: id, name, mfaEnrolled: enrolled.length > 0 }),
      });
      return inserted[0]!;
    });
    return { passkey: toProto(row) };
  }

  async listPasskeys() {
    const p = caller();
    const rows = await this.#d.db.transaction((em) => em.execute<PasskeyDbRow[]>(`select ${passkeyColumns} from passkeys where user_id = ? order by created_at desc, id desc`, [p.id]));
    return { passkeys: rows.map(toProto) };
  }

  async renamePasskey(req: RenamePasskeyRequest) {
    const p = caller();
    const name = req.name.trim();
    if (name === "") throw invalidArgument("name", "must not be blank");
    const row = await this.#write(async (em) => {
      const r = (await em.execute<PasskeyDbRow[]>(`update passkeys set name = ? where id = ? and user_id = ? returning ${passkeyColumns}`, [name, req.passkeyId, p.id]))[0];
      if (r === undefined) return undefined;
      await this.#d.events.publish(em, { aggregate: "user", verb: "passkey_renamed", aggregateId: p.id, schema: UserPasskeyRenamedSchema, payload: create(UserPasskeyRenamedSchema, { userId: p.id, passkeyId: r.id, name }) });
      return r;
    });
    if (row === undefined) throw notFound("passkey");
    return { passkey: toProto(row) };
  }

  async removePasskey(req: RemovePasskeyRequest) {
    const p = caller();
    const removed = await this.#write(async (em) => {
      const r = (await em.execute<{ id: string; name: string }[]>("delete from passkeys where id = ? and user_id = ? returning id, name", [req.passkeyId, p.id]))[0];
      if (r === undefined) return false;
      await syncMfaEnrolled(em, p.id);
      await this.#d.events.publish(em, { aggregate: "user", verb: "passkey_removed", aggregateId: p.id, schema: UserPasskeyRemovedSchema, payload: create(UserPasskeyRemovedSchema, { userId: p.id, passkeyId: r.id, name: r.name }) });
      return true;
    });
    if (!removed) throw notFound("passkey");
    return {};
  }

  async beginPasskeySignIn(req: BeginPasskeySignInRequest, hctx: HandlerContext) {
    // Each call stores a challenge: a few per address, and a bound per tenant, while they live.
    await this.#d.throttle.spend([{ key: `passkey-begin:${clientAddress(hctx.requestHeader) || "unknown"}`, rule: passkeyBeginRule }]);
    const tenantId = await activeTenantBySlug(this.#d.tenancy, req.tenantSlug);
    if (tenantId !== undefined) await this.#d.throttle.spend([{ key: `passkey-tenant:${tenantId}`, rule: passkeyTenantRule }]);
    // As a second factor, the options name the MFA challenge's user's passkeys: a browser
    // offers one that does not verify the user (or is not discoverable) only when named.
    let secondFactor: { userId: string; allow: { id: string; transports: string[] }[] } | undefined;
    if (req.mfaChallengeToken !== "") {
      secondFactor =
        tenantId === undefined
          ? undefined
          : await runInTenant(tenantId, () =>
              this.#d.db.transaction(async (em) => {
                const challenge = await liveMfaChallenge(em, tokenHash(req.mfaChallengeToken));
                if (challenge === undefined) return undefined;
                const keys = await em.execute<{ credential_id: string; transports: string[] }[]>("select credential_id, transports from passkeys where user_id = ? order by created_at, id", [challenge.user_id]);
                return { userId: challenge.user_id, allow: keys.map((k) => ({ id: k.credential_id, transports: k.transports })) };
              }),
            );
      if (secondFactor === undefined) {
        this.#log.refused("passkey sign-in", tenantId === undefined ? "tenant" : "challenge_unknown");
        throw invalidCredentials();
      }
    }
    const options = await generateAuthenticationOptions({ rpID: this.#d.webauthn.rpId, allowCredentials: secondFactor?.allow ?? [], userVerification: "preferred", timeout: webAuthnChallengeTtlMs });
    const expiresAt = new Date(Date.now() + webAuthnChallengeTtlMs);
    // An unknown tenant gets options as well (never stored, so they cannot be finished).
    if (tenantId !== undefined) {
      await runInTenant(tenantId, () =>
        this.#d.db.transaction((em) =>
          em.execute("insert into webauthn_challenges (hash, tenant_id, user_id, kind, created_at, expires_at, used_at) values (?, ?, ?, 'sign_in', now(), ?, null)", [
            tokenHash(options.challenge),
            tenantId,
            secondFactor?.userId ?? null,
            expiresAt,
          ]),
        ),
      );
    }
    return { optionsJson: JSON.stringify(options), challengeId: options.challenge, expireTime: timestampFromDate(expiresAt) };
  }

  /**
   * Refused assertions count on the client address's sign-in counter, as
   * wrong passwords do; a locked address is refused before any check.
   */
  async finishPasskeySignIn(req: FinishPasskeySignInRequest, hctx: HandlerContext) {
    const parsed = this.#parse("passkey sign-in", () => parseAuthenticationResponse(req.responseJson));
    if (parsed.challenge !== req.challengeId) return this.#refuse("challenge");
    const admission = await this.#d.throttle.admit([addressCounter(clientAddress(hctx.requestHeader))]);
    let verdict: Verdict = "neutral";
    try {
      return await this.#finishPasskeySignIn(req, parsed, hctx);
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.Unauthenticated) verdict = "failed";
      throw err;
    } finally {
      await this.#d.throttle.settle(admission, [verdict]);
    }
  }

  async #finishPasskeySignIn(req: FinishPasskeySignInRequest, parsed: ReturnType<typeof parseAuthenticationResponse>, hctx: HandlerContext) {
    const hash = tokenHash(req.challengeId);
    const found = await runAsPlatform("find the tenant of a passkey sign-in challenge", () =>
      this.#d.db.transaction((em) => em.execute<{ tenant_id: string }[]>("select tenant_id from webauthn_challenges where hash = ? and kind = 'sign_in'", [hash])),
    );
    const tenantId = found[0]?.tenant_id;
    if (tenantId === undefined) return this.#refuse("challenge");
    return runInTenant(tenantId, async () => {
      const mfaHash = req.mfaChallengeToken === "" ? undefined : tokenHash(req.mfaChallengeToken);
      const { consumed, passkey, mfa } = await this.#d.db.transaction(async (em) => ({
        consumed: (await em.execute<{ user_id: string | null }[]>("update webauthn_challenges set used_at = now() where hash = ? and kind = 'sign_in' and used_at is null and expires_at > now() returning user_id", [hash]))[0],
        // Credential ids are unique per tenant only: the challenge's tenant picks the one row (RLS says the same).
        passkey: (await em.execute<PasskeyDbRow[]>(`select ${passkeyColumns} from passkeys where tenant_id = ? and credential_id = ?`, [tenantId, parsed.credentialId]))[0],
        mfa:
          mfaHash === undefined
            ? undefined
            : await liveMfaChallenge(em, mfaHash),
      }));
      if (consumed === undefined) return this.#refuse("challenge");
      if (passkey === undefined) return this.#refuse("passkey_unknown");
      const ids = { userId: passkey.user_id, passkeyId: passkey.id };
      // A challenge begun for one user's second factor takes only that user's passkeys.
      if (consumed.user_id !== null && consumed.user_id !== passkey.user_id) return this.#refuse("challenge_other_user", ids);
      if (mfaHash !== undefined && mfa === undefined) return this.#refuse(await this.#d.db.transaction((em) => whyNotLive(em, mfaHash)), ids);
      if (mfa !== undefined && mfa.user_id !== passkey.user_id) return this.#refuse("challenge_other_user", ids);
      const { rpId, origins } = this.#d.webauthn;
      let info;
      try {
        // The stored counter is checked below, atomically, so a refusal can tell a clone from a bad signature.
        const v = await verifyAuthenticationResponse({
          response: parsed.response,
          expectedChallenge: req.challengeId,
          expectedOrigin: [...origins],
          expectedRPID: rpId,
          credential: { id: passkey.credential_id, publicKey: new Uint8Array(passkey.public_key), counter: 0, transports: passkey.transports },
          requireUserVerification: false,
        });
        if (!v.verified) throw new Error("not verified");
        info = v.authenticationInfo;
      } catch (err) {
        this.#log.refused("passkey sign-in", webAuthnCheckOf(err), ids);
        throw new ConnectError("invalid credentials", Code.Unauthenticated, undefined, undefined, err);
      }
      const stored = Number(passkey.counter);
      const presented = info.newCounter;
      const client: Client = mfa === undefined ? clientOf(hctx.requestHeader, req.device) : { device: mfa.device, userAgent: mfa.user_agent, ip: mfa.ip_address };
      const outcome = await this.#write(async (em) => {
        if (mfaHash !== undefined) {
          // Wrong codes may have exhausted the challenge since it was read: the same conditions, atomically.
          const used = await em.execute<{ hash: string }[]>(
            "update mfa_challenges set used_at = now() where hash = ? and user_id = ? and used_at is null and expires_at > now() and failed_attempts < ? returning hash",
            [mfaHash, passkey.user_id, maxChallengeAttempts],
          );
          if (used.length === 0) return "mfa_challenge" as const;
        }
        const advanced = counterAdvances(stored, presented)
          ? await em.execute<{ id: string }[]>("update passkeys set counter = ?, last_used_at = now() where id = ? and (counter < ? or (counter = 0 and ? = 0)) returning id", [presented, passkey.id, presented, presented])
          : [];
        if (advanced.length === 0) {
          await this.#d.events.publish(em, {
            aggregate: "user",
            verb: "passkey_clone_suspected",
            aggregateId: passkey.user_id,
            schema: PasskeyCloneSuspectedSchema,
            payload: create(PasskeyCloneSuspectedSchema, { userId: passkey.user_id, passkeyId: passkey.id, storedCounter: BigInt(stored), presentedCounter: BigInt(presented), ipAddress: clientAddress(hctx.requestHeader) }),
          });
          return "counter" as const;
        }
        return "ok" as const;
      });
      if (outcome === "mfa_challenge") return this.#refuse(await this.#d.db.transaction((em) => whyNotLive(em, mfaHash!)), ids);
      if (outcome === "counter") return this.#refuse("counter", ids);
      if (mfa !== undefined || info.userVerified) {
        const tokens = await this.#d.auth.completeSignIn(tenantId, passkey.user_id, client);
        return create(FinishPasskeySignInResponseSchema, { result: { case: "tokens", value: tokens } });
      }
      // Possession alone is one factor: a second one follows, as after a password.
      const challenge = await this.#d.auth.openMfaChallenge(passkey.user_id, client, ["totp", "recovery_code"]);
      return create(FinishPasskeySignInResponseSchema, { result: { case: "mfaChallenge", value: challenge } });
    });
  }

  /** Refuses a passkey sign-in with the one answer, logging which check failed. */
  #refuse(check: RefusedCheck, ids?: { userId: string; passkeyId: string }): never {
    this.#log.refused("passkey sign-in", check, ids);
    throw invalidCredentials();
  }

  /** Parses a WebAuthn response, refusing a malformed one as INVALID_ARGUMENT naming the field. */
  #parse<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof MalformedWebAuthnResponse) {
        this.#log.refused(what, "malformed");
        throw new ConnectError(`response_json: ${err.message}`, Code.InvalidArgument, undefined, undefined, err);
      }
      throw err;
    }
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.#d.db.transaction(fn);
    this.#afterCommit();
    return result;
  }
}
