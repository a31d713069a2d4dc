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
import { failedPrecondition, invalidArgument, newId, notFound, runAsPlatform, runInTenant, unauthenticated } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import { syncMfaEnrolled } from "../mfa/enrolment.js";
import type { EventPublisher } from "@bulwark/events";
import { generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse } from "@simplewebauthn/server";
import { caller, clientOf, type AuthServiceImpl, type Client } from "../auth/auth-service.js";
import { activeTenantBySlug, clientAddress } from "../auth/policy.js";
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

  constructor(deps: PasskeyServiceDeps) {
    this.#d = deps;
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
  }

  async beginPasskeyRegistration() {
    const p = caller();
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
    const name = req.name.trim();
    if (name === "") throw invalidArgument("name", "must not be blank");
    const parsed = parseOrRefuse(() => parseRegistrationResponse(req.responseJson));
    const consumed = await this.#d.db.transaction((em) =>
      em.execute<{ hash: string }[]>("update webauthn_challenges set used_at = now() where hash = ? and kind = 'registration' and user_id = ? and used_at is null and expires_at > now() returning hash", [
        tokenHash(parsed.challenge),
        p.id,
      ]),
    );
    if (consumed.length === 0) throw invalidArgument("response_json", "the challenge is unknown, used or expired");
    const { rpId, origins } = this.#d.webauthn;
    let info;
    try {
      const v = await verifyRegistrationResponse({ response: parsed.response, expectedChallenge: parsed.challenge, expectedOrigin: [...origins], expectedRPID: rpId, requireUserVerification: false });
      if (!v.verified) throw new Error("not verified");
      info = v.registrationInfo;
    } catch (err) {
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
    const options = await generateAuthenticationOptions({ rpID: this.#d.webauthn.rpId, allowCredentials: [], userVerification: "preferred", timeout: webAuthnChallengeTtlMs });
    const expiresAt = new Date(Date.now() + webAuthnChallengeTtlMs);
    const tenantId = await activeTenantBySlug(this.#d.tenancy, req.tenantSlug);
    if (tenantId !== undefined) await this.#d.throttle.spend([{ key: `passkey-tenant:${tenantId}`, rule: passkeyTenantRule }]);
    // An unknown tenant gets options as well (never stored, so they cannot be finished).
    if (tenantId !== undefined) {
      await runInTenant(tenantId, () =>
        this.#d.db.transaction((em) =>
          em.execute("insert into webauthn_challenges (hash, tenant_id, user_id, kind, created_at, expires_at, used_at) values (?, ?, null, 'sign_in', now(), ?, null)", [tokenHash(options.challenge), tenantId, expiresAt]),
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
    const parsed = parseOrRefuse(() => parseAuthenticationResponse(req.responseJson));
    if (parsed.challenge !== req.challengeId) throw invalidCredentials();
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
    if (tenantId === undefined) throw invalidCredentials();
    return runInTenant(tenantId, async () => {
      const mfaHash = req.mfaChallengeToken === "" ? undefined : tokenHash(req.mfaChallengeToken);
      const { consumed, passkey, mfa } = await this.#d.db.transaction(async (em) => ({
        consumed: (await em.execute<{ hash: string }[]>("update webauthn_challenges set used_at = now() where hash = ? and kind = 'sign_in' and used_at is null and expires_at > now() returning hash", [hash])).length > 0,
        passkey: (await em.execute<PasskeyDbRow[]>(`select ${passkeyColumns} from passkeys where credential_id = ?`, [parsed.credentialId]))[0],
        mfa:
          mfaHash === undefined
            ? undefined
            : (await em.execute<{ user_id: string; device: string; user_agent: string; ip_address: string }[]>("select user_id, device, user_agent, ip_address from mfa_challenges where hash = ? and used_at is null and expires_at > now()", [mfaHash]))[0],
      }));
      if (!consumed || passkey === undefined) throw invalidCredentials();
      if (mfaHash !== undefined && (mfa === undefined || mfa.user_id !== passkey.user_id)) throw invalidCredentials();
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
        throw new ConnectError("invalid credentials", Code.Unauthenticated, undefined, undefined, err);
      }
      const stored = Number(passkey.counter);
      const presented = info.newCounter;
      const client: Client = mfa === undefined ? clientOf(hctx.requestHeader, req.device) : { device: mfa.device, userAgent: mfa.user_agent, ip: mfa.ip_address };
      const outcome = await this.#write(async (em) => {
        if (mfaHash !== undefined) {
          const used = await em.execute<{ hash: string }[]>("update mfa_challenges set used_at = now() where hash = ? and user_id = ? and used_at is null and expires_at > now() returning hash", [mfaHash, passkey.user_id]);
          if (used.length === 0) return "refused" as const;
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
          return "refused" as const;
        }
        return "ok" as const;
      });
      if (outcome === "refused") throw invalidCredentials();
      if (mfa !== undefined || info.userVerified) {
        const tokens = await this.#d.auth.completeSignIn(tenantId, passkey.user_id, client);
        return create(FinishPasskeySignInResponseSchema, { result: { case: "tokens", value: tokens } });
      }
      // Possession alone is one factor: a second one follows, as after a password.
      const challenge = await this.#d.auth.openMfaChallenge(passkey.user_id, client, ["totp", "recovery_code"]);
      return create(FinishPasskeySignInResponseSchema, { result: { case: "mfaChallenge", value: challenge } });
    });
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.#d.db.transaction(fn);
    this.#afterCommit();
    return result;
  }
}

/** Parses a WebAuthn response, refusing a malformed one as INVALID_ARGUMENT naming the field. */
function parseOrRefuse<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof MalformedWebAuthnResponse) throw new ConnectError(`response_json: ${err.message}`, Code.InvalidArgument, undefined, undefined, err);
    throw err;
  }
}
