import { timingSafeEqual, createHash } from "node:crypto";
import type { Principal } from "./context.js";
import { unauthenticated } from "./errors.js";

/**
 * Turns the credential of a call into a principal. Resolvers are tried in
 * order: one returns undefined for a credential it does not recognise,
 * throws UNAUTHENTICATED for one it recognises but rejects (expired,
 * revoked, wrong). Identity and keys add access-token and API-key resolvers
 * through this interface.
 */
export interface CredentialResolver {
  resolve(headers: Headers): Promise<Principal | undefined>;
}

/** The bearer token of the Authorization header, if any. */
export function bearerToken(headers: Headers): string | undefined {
  const value = headers.get("authorization");
  if (value === null) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/**
 * The operator credential of a fresh installation, from
 * BULWARK_BOOTSTRAP_TOKEN: a platform principal holding every permission.
 * It exists so a fresh installation can be reached at all; once the first
 * platform operator exists every service retires it (unless
 * BULWARK_BOOTSTRAP_RETIRES=false), as Vault's root token is revoked after
 * set-up. Compared in constant time.
 */
export class BootstrapCredentialResolver implements CredentialResolver {
  readonly #digest: Buffer;
  readonly #retired: () => boolean;
  static readonly principal: Principal = Object.freeze({
    id: "bootstrap",
    kind: "bootstrap",
    permissions: new Set(["*"]),
  });

  /**
   * @param retired tells whether the credential has been retired (once a
   * platform operator exists); a retired token is refused like any unknown one.
   */
  constructor(token: string, retired: () => boolean = () => false) {
    this.#digest = digest(token);
    this.#retired = retired;
  }

  async resolve(headers: Headers): Promise<Principal | undefined> {
    const token = bearerToken(headers);
    if (token === undefined) return undefined;
    if (!timingSafeEqual(digest(token), this.#digest)) return undefined;
    if (this.#retired()) return undefined;
    return BootstrapCredentialResolver.principal;
  }
}

/**
 * A fixed table of bearer tokens, each naming a principal. For operators
 * wiring a CI job or for tests of the interceptors; real deployments use
 * access tokens and API keys.
 */
export class StaticTokenResolver implements CredentialResolver {
  readonly #tokens = new Map<string, Principal>();

  constructor(entries: Iterable<[token: string, principal: Principal]>) {
    for (const [token, principal] of entries) this.#tokens.set(digest(token).toString("hex"), principal);
  }

  /** Adds a token (e.g. when an operator issues a CI credential). */
  add(token: string, principal: Principal): void {
    this.#tokens.set(digest(token).toString("hex"), principal);
  }

  async resolve(headers: Headers): Promise<Principal | undefined> {
    const token = bearerToken(headers);
    if (token === undefined) return undefined;
    return this.#tokens.get(digest(token).toString("hex"));
  }
}

/** Resolves with the first resolver that recognises the credential. */
export async function resolvePrincipal(resolvers: readonly CredentialResolver[], headers: Headers): Promise<Principal | undefined> {
  if (!headers.has("authorization")) return undefined;
  for (const resolver of resolvers) {
    const principal = await resolver.resolve(headers);
    if (principal !== undefined) return principal;
  }
  throw unauthenticated("the credential is not valid");
}
