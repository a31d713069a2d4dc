import { createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet } from "jose";
import type { Principal } from "./context.js";
import type { CacheObserver } from "./cache-observer.js";
import { bearerToken, type CredentialResolver } from "./credentials.js";
import { unauthenticated } from "./errors.js";

/** The `iss` of every access token identity signs. */
export const accessTokenIssuer = "bulwark-identity";
/** The JOSE `typ` header of an access token (RFC 9068). */
export const accessTokenType = "at+jwt";
/**
 * The `aud` of every access token: the Bulwark mesh. A token identity signs
 * for anything else (a future ID token for an application) is refused.
 */
export const accessTokenAudience = "bulwark";
/**
 * The `kind` claim of a platform operator's access token. Such a token has
 * no `ten`: the operator stands outside every tenant.
 */
export const operatorTokenKind = "operator";

/** The claims of a Bulwark access token beyond the registered ones. */
export interface AccessTokenClaims {
  /** The user id. */
  readonly sub: string;
  /** The tenant id (absent from an operator's token). */
  readonly ten?: string;
  /** `operator` for a platform operator's token; absent for a tenant user's. */
  readonly kind?: string;
  /** The session id, for revocation. */
  readonly sid: string;
  /** Role ids the user held at issue. */
  readonly roles: readonly string[];
  /** Effective permissions at issue. */
  readonly perms: readonly string[];
  /** The user's permission epoch at issue: a token older than the latest reduction of their permissions is refused. */
  readonly pep?: number;
  /** When the user last authenticated, Unix seconds (OpenID Connect's claim; kept across refreshes). */
  readonly auth_time?: number;
  /** Expiry, Unix seconds (registered claim; required). */
  readonly exp?: number;
}

/**
 * Where a verifier gets identity's public keys. Identity itself reads its
 * own key store; every other service fetches them (GetJwks) through
 * `CachedJwksSource`.
 */
export interface JwksSource {
  /** The current key set; `refresh` asks for a fresh one (a token named an unknown kid). */
  keySet(refresh?: boolean): Promise<JSONWebKeySet>;
}

/** The slice of identity's AuthService client that fetching keys needs. */
export interface JwksClient {
  getJwks(request: object): Promise<{ jwksJson: string }>;
}

/** How `CachedJwksSource` caches. */
export interface CachedJwksOptions {
  /** How long a fetched key set is used before it is fetched again. */
  readonly ttlMs?: number;
  /** The least time between two fetches forced by unknown kids (a flood of forged kids costs one fetch). */
  readonly minRefreshIntervalMs?: number;
}

/**
 * A key set fetched from identity and kept for `ttlMs`, refetched early
 * when a token names a kid it lacks (identity rotated), at most once per
 * `minRefreshIntervalMs`. Concurrent callers share one fetch. When a fetch
 * fails and a key set is cached, the cached one keeps serving.
 */
export class CachedJwksSource implements JwksSource {
  readonly #fetch: () => Promise<JSONWebKeySet>;
  readonly #ttlMs: number;
  readonly #minRefreshMs: number;
  #cached: { keys: JSONWebKeySet; at: number } | undefined;
  #inflight: Promise<JSONWebKeySet> | undefined;

  constructor(fetch: () => Promise<JSONWebKeySet>, options: CachedJwksOptions = {}) {
    this.#fetch = fetch;
    this.#ttlMs = options.ttlMs ?? 300_000;
    this.#minRefreshMs = options.minRefreshIntervalMs ?? 5_000;
  }

  /** A source that calls identity's GetJwks RPC through a typed client. */
  static fromClient(client: JwksClient, options: CachedJwksOptions = {}): CachedJwksSource {
    return new CachedJwksSource(async () => JSON.parse((await client.getJwks({})).jwksJson) as JSONWebKeySet, options);
  }

  async keySet(refresh = false): Promise<JSONWebKeySet> {
    const now = Date.now();
    const c = this.#cached;
    if (c !== undefined) {
      const stale = now - c.at > this.#ttlMs;
      const mayRefresh = now - c.at > this.#minRefreshMs;
      if (!stale && !(refresh && mayRefresh)) return c.keys;
    }
    this.#inflight ??= this.#fetch()
      .then((keys) => {
        this.#cached = { keys, at: Date.now() };
        return keys;
      })
      .catch(() => {
        if (this.#cached !== undefined) return this.#cached.keys;
        throw unauthenticated("the access token cannot be verified now");
      })
      .finally(() => {
        this.#inflight = undefined;
      });
    return this.#inflight;
  }
}

/** At most this many role ids of a credential are carried along (a principal holds a handful). */
const maxCarriedRoles = 50;

/** The role ids of a token or assertion claim: strings only, bounded in number and length. */
export function rolesOf(claim: unknown): readonly string[] {
  if (!Array.isArray(claim)) return [];
  return Object.freeze(claim.filter((r): r is string => typeof r === "string" && r.length > 0 && r.length <= 128).slice(0, maxCarriedRoles));
}

/** The subject identity publishes session revocations on. */
export function revocationSubject(subjectPrefix: string): string {
  return `${subjectPrefix}.identity.session.revoked`;
}

/** The subject identity publishes reductions of a user's permissions on. */
export function grantsReducedSubject(subjectPrefix: string): string {
  return `${subjectPrefix}.identity.user.grants_reduced`;
}

/**
 * What the mesh has revoked before the access tokens concerned expire:
 * sessions (`session.revoked`), and users whose permissions were reduced
 * (`user.grants_reduced`, carrying the user's new permission epoch — tokens
 * issued under an older epoch are refused, so the holder refreshes and gets
 * the reduced permissions). Each entry is kept until the last token it
 * concerns has expired (`valid_until_unix`), so the set stays as small as
 * the number of revocations within one token lifetime.
 *
 * The runtime feeds it from identity's stream through a durable follower
 * that checks identity's signature and replays what it missed after a
 * restart or a disconnection; identity also records its own at once.
 */
export class RevokedSessions {
  readonly #until = new Map<string, number>();
  readonly #epochs = new Map<string, { epoch: number; until: number }>();
  #sweepAt = 0;

  /** Records a revocation (also called directly by identity for its own). */
  revoke(sessionId: string, validUntilUnix: number): void {
    this.#until.set(sessionId, Math.max(validUntilUnix, this.#until.get(sessionId) ?? 0));
    this.#sweep();
  }

  isRevoked(sessionId: string): boolean {
    const until = this.#until.get(sessionId);
    if (until === undefined) return false;
    if (until * 1000 < Date.now()) {
      this.#until.delete(sessionId);
      return false;
    }
    return true;
  }

  /** Records that a user's tokens below `epoch` no longer hold their permissions. */
  reduceGrants(userId: string, epoch: number, validUntilUnix: number): void {
    const known = this.#epochs.get(userId);
    if (known !== undefined && known.epoch >= epoch) return;
    this.#epochs.set(userId, { epoch, until: validUntilUnix });
    this.#sweep();
  }

  /** True when a token of `userId` issued under `tokenEpoch` predates a reduction of their permissions. */
  grantsReduced(userId: string, tokenEpoch: number): boolean {
    const known = this.#epochs.get(userId);
    if (known === undefined) return false;
    if (known.until * 1000 < Date.now()) {
      this.#epochs.delete(userId);
      return false;
    }
    return tokenEpoch < known.epoch;
  }

  /** How many revocations are remembered. */
  get size(): number {
    return this.#until.size + this.#epochs.size;
  }

  #sweep(): void {
    const now = Date.now();
    if (now < this.#sweepAt) return;
    this.#sweepAt = now + 60_000;
    for (const [sid, until] of this.#until) if (until * 1000 < now) this.#until.delete(sid);
    for (const [uid, e] of this.#epochs) if (e.until * 1000 < now) this.#epochs.delete(uid);
  }
}

/** How an AccessTokenVerifier is built. */
export interface AccessTokenVerifierOptions {
  readonly source: JwksSource;
  readonly revoked: RevokedSessions;
  /** Seconds of clock skew tolerated on `exp` and `iat`. */
  readonly clockToleranceS?: number;
  /** Told whether each token was found verified already (`access_token` lookups), for hit-rate metrics. */
  readonly cacheObserver?: CacheObserver | undefined;
}

/** How many verified tokens a verifier remembers. */
const maxVerifiedTokens = 10_000;
/** How many unknown key ids a verifier remembers, and for how long. */
const maxUnknownKids = 1_000;
const unknownKidTtlMs = 5_000;
/** How often a verifier re-reads the key set to forget tokens of withdrawn keys. */
const keyCheckIntervalMs = 5_000;

const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

interface Verified {
  readonly principal: Principal;
  readonly expiresAtMs: number;
  readonly kid: string;
  readonly epoch: number;
}

/**
 * Verifies identity's access tokens locally in every service: an EdDSA JWT
 * from `Authorization: Bearer`, for the mesh (`aud`), checked against
 * identity's published keys (refetched once when the token names an unknown
 * kid; a kid still unknown after that is remembered briefly, so a flood of
 * forged kids costs no fetch per call) and against the mesh's revocations
 * (sessions, and permission epochs). A bearer token that is not a JWT is
 * left to the other resolvers (the bootstrap token, API keys); a JWT that
 * fails is UNAUTHENTICATED, without saying why beyond "expired".
 */
export class AccessTokenVerifier implements CredentialResolver {
  readonly #source: JwksSource;
  readonly #revoked: RevokedSessions;
  readonly #tolerance: number;
  readonly #observer: CacheObserver | undefined;
  #jwks: { set: JSONWebKeySet; fn: ReturnType<typeof createLocalJWKSet>; kids: ReadonlySet<string> } | undefined;
  readonly #verified = new Map<string, Verified>();
  readonly #unknownKids = new Map<string, number>();
  #keysCheckedAt = 0;

  constructor(options: AccessTokenVerifierOptions) {
    this.#source = options.source;
    this.#revoked = options.revoked;
    this.#tolerance = options.clockToleranceS ?? 5;
    this.#observer = options.cacheObserver;
  }

  async resolve(headers: Headers): Promise<Principal | undefined> {
    const token = bearerToken(headers);
    if (token === undefined || !jwtShape.test(token)) return undefined;
    return this.verify(token);
  }

  /** The principal an access token stands for; UNAUTHENTICATED if it is not valid now. */
  async verify(token: string): Promise<Principal> {
    const cached = this.#verified.get(token);
    if (cached !== undefined && cached.expiresAtMs > Date.now()) {
      if (Date.now() - this.#keysCheckedAt > keyCheckIntervalMs) await this.#useKeySet(await this.#source.keySet(false));
      if (this.#verified.has(token)) {
        this.#observer?.lookup("access_token", true);
        this.#checkRevocations(cached.principal, cached.epoch);
        return cached.principal;
      }
    }
    this.#observer?.lookup("access_token", false);
    const verified = await this.#verifyUncached(token);
    this.#remember(token, verified);
    return verified.principal;
  }

  #checkRevocations(principal: Principal, epoch: number): void {
    if (principal.sessionId !== undefined && this.#revoked.isRevoked(principal.sessionId)) throw unauthenticated("the session has been revoked");
    if (this.#revoked.grantsReduced(principal.id, epoch)) throw unauthenticated("the permissions of the token have changed; refresh it");
  }

  /**
   * Keeps a verified token's principal until the token expires, so a client
   * reusing its token (the common case) costs one map lookup and the
   * revocation checks instead of a signature verification. Bounded; the
   * oldest entries go first. Entries of a key that identity withdrew are
   * forgotten when the key set next changes.
   */
  #remember(token: string, verified: Verified): void {
    if (this.#verified.size >= maxVerifiedTokens) {
      const oldest = this.#verified.keys().next().value;
      if (oldest !== undefined) this.#verified.delete(oldest);
    }
    this.#verified.set(token, verified);
  }

  async #verifyUncached(token: string): Promise<Verified> {
    let kid: string;
    try {
      const header = decodeProtectedHeader(token);
      if (typeof header.kid !== "string") throw new Error("no kid");
      kid = header.kid;
    } catch {
      throw unauthenticated("the access token is not valid");
    }
    const unknownUntil = this.#unknownKids.get(kid);
    if (unknownUntil !== undefined && unknownUntil > Date.now()) throw unauthenticated("the access token is not valid");
    let claims: AccessTokenClaims;
    try {
      claims = await this.#verifyJwt(token, false);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey) {
        try {
          claims = await this.#verifyJwt(token, true);
        } catch (again) {
          if (again instanceof joseErrors.JWKSNoMatchingKey) this.#forgetKid(kid);
          throw refusal(again);
        }
      } else throw refusal(err);
    }
    const operator = claims.kind === operatorTokenKind;
    // An operator's token must name no tenant, and a user's must name one.
    const tenantOk = operator ? claims.ten === undefined && typeof claims.sub === "string" && claims.sub.startsWith("opr_") : typeof claims.ten === "string";
    if (typeof claims.sub !== "string" || !tenantOk || typeof claims.sid !== "string" || !Array.isArray(claims.perms)) {
      throw unauthenticated("the access token is not valid");
    }
    const permissions = new Set(claims.perms.filter((p): p is string => typeof p === "string"));
    const epoch = typeof claims.pep === "number" ? claims.pep : 0;
    const authTime = typeof claims.auth_time === "number" && Number.isFinite(claims.auth_time) ? claims.auth_time : undefined;
    const expiresAtMs = Number(claims.exp) * 1000;
    // An operator is a platform principal: no tenantId, so isPlatformPrincipal holds.
    const auth = authTime === undefined ? {} : { authTime };
    const roles = rolesOf(claims.roles);
    const held = roles.length === 0 ? {} : { roles };
    const principal: Principal = operator
      ? { id: claims.sub, kind: "operator", permissions, sessionId: claims.sid, ...auth, ...held }
      : { id: claims.sub, kind: "user", tenantId: claims.ten, permissions, sessionId: claims.sid, ...auth, ...held };
    this.#checkRevocations(principal, epoch);
    return { principal, expiresAtMs, kid, epoch };
  }

  #forgetKid(kid: string): void {
    if (this.#unknownKids.size >= maxUnknownKids) {
      const oldest = this.#unknownKids.keys().next().value;
      if (oldest !== undefined) this.#unknownKids.delete(oldest);
    }
    this.#unknownKids.set(kid, Date.now() + unknownKidTtlMs);
  }

  /** Adopts a key set: builds its verifier and drops remembered tokens whose key is gone. */
  async #useKeySet(set: JSONWebKeySet): Promise<ReturnType<typeof createLocalJWKSet>> {
    this.#keysCheckedAt = Date.now();
    if (this.#jwks?.set !== set) {
      const kids = new Set(set.keys.map((k) => k.kid).filter((k): k is string => typeof k === "string"));
      this.#jwks = { set, fn: createLocalJWKSet(set), kids };
      for (const [token, v] of this.#verified) if (!kids.has(v.kid)) this.#verified.delete(token);
      for (const kid of kids) this.#unknownKids.delete(kid);
    }
    return this.#jwks.fn;
  }

  async #verifyJwt(token: string, refresh: boolean): Promise<AccessTokenClaims> {
    const fn = await this.#useKeySet(await this.#source.keySet(refresh));
    const { payload } = await jwtVerify(token, fn, {
      issuer: accessTokenIssuer,
      audience: accessTokenAudience,
      algorithms: ["EdDSA"],
      typ: accessTokenType,
      clockTolerance: this.#tolerance,
      requiredClaims: ["exp", "sub", "iat"],
    });
    return payload as unknown as AccessTokenClaims;
  }
}

function refusal(err: unknown): Error {
  if (err instanceof joseErrors.JWTExpired) return unauthenticated("the access token has expired");
  if (err instanceof Error && err.name === "ConnectError") return err;
  return unauthenticated("the access token is not valid");
}
