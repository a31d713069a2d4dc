import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { VerifyApiKeyResponse } from "@bulwark/contracts";
import { bearerToken, looksLikeApiKey, parseApiKey, runAsCredentialVerifier, unauthenticated, type CredentialResolver, type Principal, type RevokedSessions } from "@bulwark/core";

/** The slice of keys' ApiKeyService client the resolver calls. */
export interface ApiKeyVerifier {
  verifyApiKey(request: { token: string; refreshPermissions: boolean }): Promise<VerifyApiKeyResponse>;
}

/** How an ApiKeyResolver is built. */
export interface ApiKeyResolverOptions {
  /** keys' VerifyApiKey (through `createServiceTransport(KEYS_URL, assertions, "keys")`). */
  readonly verifier: ApiKeyVerifier;
  /** The service that verifies (it calls keys as itself, with only `keys.api_keys.verify`). */
  readonly service: string;
  /** The mesh's permission reductions: an answer computed under an older epoch of the owner is refreshed. */
  readonly revoked?: RevokedSessions;
  /** The longest a verified key is remembered (keys may ask for less). */
  readonly cacheTtlMs?: number;
  /** How many verified keys are remembered. */
  readonly maxEntries?: number;
}

interface Entry {
  readonly principal: Principal;
  readonly ownerId: string;
  readonly epoch: number;
  readonly untilMs: number;
}

/** The one refusal of a key that is not valid now, whatever the reason. */
const invalidKey = (): ConnectError => unauthenticated("the API key is not valid");

/**
 * Accepts `authorization: Bearer <API key>` in every service: asks keys'
 * VerifyApiKey who the key stands for (principal kind `api_key`, its id the
 * key's id, its permissions the key's effective ones) and remembers the
 * answer briefly. A malformed key or a bad checksum is refused without a
 * call. The cache is keyed by a digest of the key (the key itself is not
 * kept), bounded, and dropped per key, per owner or entirely by the
 * runtime when keys announces a change (`key.revoked`, `key.updated`,
 * `key.rotated`…) or identity a reduction (`user.grants_reduced`,
 * suspension, deletion), so a revoked key stops working within a second.
 * An answer that raced with such an event is not cached. Keys with limits
 * are never cached (keys counts every use). When keys cannot be reached the
 * key is refused UNAVAILABLE naming the keys service, never its address;
 * other credentials are unaffected.
 */
export class ApiKeyResolver implements CredentialResolver {
  readonly #o: ApiKeyResolverOptions;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #cache = new Map<string, Entry>();
  #generation = 0;

  constructor(options: ApiKeyResolverOptions) {
    this.#o = options;
    this.#ttlMs = options.cacheTtlMs ?? 10_000;
    this.#max = options.maxEntries ?? 10_000;
  }

  async resolve(headers: Headers): Promise<Principal | undefined> {
    const token = bearerToken(headers);
    if (token === undefined || !looksLikeApiKey(token)) return undefined;
    if (parseApiKey(token) === undefined) throw invalidKey();
    const digest = createHash("sha256").update(token).digest("base64url");
    const now = Date.now();
    const hit = this.#cache.get(digest);
    if (hit !== undefined) {
      if (hit.untilMs > now && !this.#outdated(hit.ownerId, hit.epoch)) return hit.principal;
      this.#cache.delete(digest);
    }
    const generation = this.#generation;
    let answer = await this.#verify(token, false);
    if (this.#outdated(answer.ownerUserId, Number(answer.ownerPermissionEpoch))) answer = await this.#verify(token, true);
    const principal: Principal = { id: answer.keyId, kind: "api_key", tenantId: answer.tenantId, permissions: new Set(answer.permissions) };
    const cacheForMs = Number(answer.cacheFor?.seconds ?? 0n) * 1000 + Math.floor((answer.cacheFor?.nanos ?? 0) / 1e6);
    const expiresMs = answer.expireTime === undefined ? Number.POSITIVE_INFINITY : Number(answer.expireTime.seconds) * 1000;
    if (cacheForMs > 0 && generation === this.#generation) {
      if (this.#cache.size >= this.#max) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      this.#cache.set(digest, { principal, ownerId: answer.ownerUserId, epoch: Number(answer.ownerPermissionEpoch), untilMs: Math.min(now + Math.min(cacheForMs, this.#ttlMs), expiresMs) });
    }
    return principal;
  }

  /** Forgets a key (it was revoked, rotated or changed). */
  forgetKey(keyId: string): void {
    this.#forget((e) => e.principal.id === keyId);
  }

  /** Forgets every key of an owner (their permissions shrank, they were suspended or deleted). */
  forgetOwner(userId: string): void {
    this.#forget((e) => e.ownerId === userId);
  }

  /** Forgets everything. */
  clear(): void {
    this.#generation++;
    this.#cache.clear();
  }

  /** How many verified keys are remembered. */
  get size(): number {
    return this.#cache.size;
  }

  #forget(match: (e: Entry) => boolean): void {
    this.#generation++;
    for (const [k, e] of this.#cache) if (match(e)) this.#cache.delete(k);
  }

  #outdated(ownerId: string, epoch: number): boolean {
    return this.#o.revoked?.grantsReduced(ownerId, epoch) ?? false;
  }

  async #verify(key: string, refreshPermissions: boolean): Promise<VerifyApiKeyResponse> {
    try {
      return await runAsCredentialVerifier(this.#o.service, () => this.#o.verifier.verifyApiKey({ token: key, refreshPermissions }));
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unauthenticated) throw invalidKey();
      if (ce.code === Code.ResourceExhausted) throw new ConnectError(ce.rawMessage.slice(0, 200), Code.ResourceExhausted);
      throw new ConnectError("API keys cannot be verified now: the keys service is unavailable; retry", Code.Unavailable, undefined, undefined, err);
    }
  }
}
