import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { EnvelopeSchema, SessionRevokedSchema } from "@bulwark/contracts";
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet } from "jose";
import type { Principal } from "./context.js";
import { bearerToken, type CredentialResolver } from "./credentials.js";
import { unauthenticated } from "./errors.js";

/** The `iss` of every access token identity signs. */
export const accessTokenIssuer = "bulwark-identity";
/** The JOSE `typ` header of an access token (RFC 9068). */
export const accessTokenType = "at+jwt";
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
  /** Expiry, Unix seconds (registered claim; required). */
  readonly exp?: number;
  /** When the user last authenticated, Unix seconds (OpenID Connect's claim; kept across refreshes). */
  readonly auth_time?: number;
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

/** The subject identity publishes session revocations on. */
export function revocationSubject(subjectPrefix: string): string {
  return `${subjectPrefix}.identity.session.revoked`;
}

/** Something that delivers NATS messages on a subject (a NatsConnection fits). */
export interface SubjectSubscriber {
  subscribe(subject: string, opts: { callback: (err: Error | null, msg: { data: Uint8Array }) => void }): { unsubscribe(): void };
}

/**
 * Sessions revoked before their access tokens expire, fed by
 * `<prefix>.identity.session.revoked` events. Each entry is kept until the
 * last token of its session has expired (`valid_until_unix`), so the set
 * stays as small as the number of revocations within one token lifetime.
 *
 * A service that starts later catches up by replaying identity's stream
 * (the runtime does, from now minus the longest token lifetime).
 */
export class RevokedSessions {
  readonly #until = new Map<string, number>();
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

  /** How many revocations are remembered. */
  get size(): number {
    return this.#until.size;
  }

  /**
   * Listens for revocation events on `nc`; returns a function that stops
   * listening. Undecodable messages are ignored.
   */
  subscribe(nc: SubjectSubscriber, subjectPrefix: string): () => void {
    const sub = nc.subscribe(revocationSubject(subjectPrefix), {
      callback: (err, msg) => {
        if (err === null) this.ingest(msg.data);
      },
    });
    return () => sub.unsubscribe();
  }

  /**
   * Records the revocation a serialized `session.revoked` envelope carries
   * (from a live message or a replay of identity's stream). Anything else
   * revokes nothing.
   */
  ingest(data: Uint8Array): void {
    try {
      const envelope = fromBinary(EnvelopeSchema, data);
      const payload = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, SessionRevokedSchema);
      if (payload !== undefined && payload.sessionId !== "") this.revoke(payload.sessionId, Number(payload.validUntilUnix));
    } catch {
      // Not a SessionRevoked envelope.
    }
  }

  #sweep(): void {
    const now = Date.now();
    if (now < this.#sweepAt) return;
    this.#sweepAt = now + 60_000;
    for (const [sid, until] of this.#until) if (until * 1000 < now) this.#until.delete(sid);
  }
}

/** How an AccessTokenVerifier is built. */
export interface AccessTokenVerifierOptions {
  readonly source: JwksSource;
  readonly revoked: RevokedSessions;
  /** Seconds of clock skew tolerated on `exp` and `iat`. */
  readonly clockToleranceS?: number;
}

/** How many verified tokens a verifier remembers. */
const maxVerifiedTokens = 10_000;

const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Verifies identity's access tokens locally in every service: an EdDSA JWT
 * from `Authorization: Bearer`, checked against identity's published keys
 * (refetched once when the token names an unknown kid) and against the set
 * of revoked sessions. A bearer token that is not a JWT is left to the
 * other resolvers (the bootstrap token, API keys); a JWT that fails is
 * UNAUTHENTICATED, without saying why beyond "expired".
 */
export class AccessTokenVerifier implements CredentialResolver {
  readonly #source: JwksSource;
  readonly #revoked: RevokedSessions;
  readonly #tolerance: number;
  #jwks: { set: JSONWebKeySet; fn: ReturnType<typeof createLocalJWKSet> } | undefined;
  readonly #verified = new Map<string, { principal: Principal; expiresAtMs: number }>();

  constructor(options: AccessTokenVerifierOptions) {
    this.#source = options.source;
    this.#revoked = options.revoked;
    this.#tolerance = options.clockToleranceS ?? 5;
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
      if (cached.principal.sessionId !== undefined && this.#revoked.isRevoked(cached.principal.sessionId)) throw unauthenticated("the session has been revoked");
      return cached.principal;
    }
    const verified = await this.#verifyUncached(token);
    this.#remember(token, verified);
    return verified.principal;
  }

  /**
   * Keeps a verified token's principal until the token expires, so a client
   * reusing its token (the common case) costs one map lookup and the
   * revocation check instead of a signature verification. Bounded; the
   * oldest entries go first.
   */
  #remember(token: string, verified: { principal: Principal; expiresAtMs: number }): void {
    if (this.#verified.size >= maxVerifiedTokens) {
      const oldest = this.#verified.keys().next().value;
      if (oldest !== undefined) this.#verified.delete(oldest);
    }
    this.#verified.set(token, verified);
  }

  async #verifyUncached(token: string): Promise<{ principal: Principal; expiresAtMs: number }> {
    let claims: AccessTokenClaims;
    try {
      claims = await this.#verifyJwt(token, false);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey) {
        try {
          claims = await this.#verifyJwt(token, true);
        } catch (again) {
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
    if (this.#revoked.isRevoked(claims.sid)) throw unauthenticated("the session has been revoked");
    const permissions = new Set(claims.perms.filter((p): p is string => typeof p === "string"));
    // An operator is a platform principal: no tenantId, so isPlatformPrincipal holds.
    const expiresAtMs = Number(claims.exp) * 1000;
    if (operator) return { principal: { id: claims.sub, kind: "operator", permissions, sessionId: claims.sid }, expiresAtMs };
    const authTime = typeof claims.auth_time === "number" && Number.isFinite(claims.auth_time) ? claims.auth_time : undefined;
    return { principal: { id: claims.sub, kind: "user", tenantId: claims.ten, permissions, sessionId: claims.sid, ...(authTime !== undefined ? { authTime } : {}) }, expiresAtMs };
  }

  async #verifyJwt(token: string, refresh: boolean): Promise<AccessTokenClaims> {
    const set = await this.#source.keySet(refresh);
    if (this.#jwks?.set !== set) this.#jwks = { set, fn: createLocalJWKSet(set) };
    const { payload } = await jwtVerify(token, this.#jwks.fn, { issuer: accessTokenIssuer, algorithms: ["EdDSA"], typ: accessTokenType, clockTolerance: this.#tolerance, requiredClaims: ["exp", "sub", "iat"] });
    return payload as unknown as AccessTokenClaims;
  }
}

function refusal(err: unknown): Error {
  if (err instanceof joseErrors.JWTExpired) return unauthenticated("the access token has expired");
  if (err instanceof Error && err.name === "ConnectError") return err;
  return unauthenticated("the access token is not valid");
}
