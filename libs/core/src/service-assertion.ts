import { decodeProtectedHeader, jwtVerify, SignJWT, errors as joseErrors } from "jose";
import { currentContext, isPlatformPrincipal, newRequestId, runWithContext, type CallContext, type Principal, type PrincipalKind } from "./context.js";
import { unauthenticated } from "./errors.js";
import { rolesOf } from "./access-tokens.js";
import { MeshKeys } from "./mesh-keys.js";

/** The metadata header that carries a signed service assertion. */
export const serviceAssertionHeader = "bulwark-service-assertion";

const issuerPrefix = "bulwark-svc:";
/** How long an assertion is valid: long enough for one hop and its retries, short enough to be useless when stolen. */
export const assertionLifetimeSeconds = 30;

/**
 * The services that may act in the explicit platform scope downstream: as a
 * service principal with no tenant, or carrying a platform reason. A named
 * grant, visible in review; every other service that asks for platform scope
 * is treated as an anonymous caller (public RPCs only), and a tenant's
 * principal never carries platform scope to the next service whoever signs.
 */
export const platformScopeGrants: ReadonlySet<string> = new Set(["compliance"]);

/**
 * Narrower than platform scope: a service that may call one named callee as
 * itself outside every tenant, holding only the permissions listed, for the
 * callee to serve that service's own platform data. The callee sees a
 * service principal with no tenant, no platform reason and just these
 * permissions. identity → keys: encrypting and decrypting its token-signing
 * keys and operators' TOTP secrets under its own service key ring, which
 * only identity calling as itself can use.
 */
export const serviceSelfGrants: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>> = new Map([
  ["identity", new Map([["keys", ["keys.encryption.encrypt", "keys.encryption.decrypt"]]])],
  // audit → keys: sealing and opening its checkpoint signing key under its own service ring.
  ["audit", new Map([["keys", ["keys.encryption.encrypt", "keys.encryption.decrypt"]]])],
]);

/**
 * What a service acting as itself outside any tenant, without the platform
 * grant, may still ask another service: to verify a credential presented
 * to it (an API key), whose tenant it cannot know before the answer. Such
 * a caller is a service principal holding exactly these permissions and no
 * platform scope; anything else tenantless stays anonymous.
 */
export const credentialVerifierPermissions: ReadonlySet<string> = new Set(["keys.api_keys.verify"]);

/**
 * Runs `fn` as this service verifying a presented credential: calls made
 * inside carry a tenantless service principal holding only
 * `credentialVerifierPermissions`, which the callee keeps (see
 * `trustedContext`). The API-key resolver of every service uses it.
 */
export function runAsCredentialVerifier<T>(service: string, fn: () => T): T {
  const parent = currentContext();
  const principal: Principal = { id: `svc_${service}`, kind: "service", permissions: credentialVerifierPermissions };
  return runWithContext({ requestId: parent?.requestId ?? newRequestId(), principal, clientIp: parent?.clientIp }, fn);
}

function isCredentialVerifier(principal: Principal): boolean {
  return principal.permissions.size === credentialVerifierPermissions.size && [...principal.permissions].every((p) => credentialVerifierPermissions.has(p));
}

interface AssertionClaims {
  ten?: string;
  pid?: string;
  pk?: PrincipalKind;
  perm?: string[];
  /** The principal's role ids (for the audit trail of events the callee writes). */
  rol?: string[];
  sid?: string;
  at?: number;
  rid: string;
  plat?: string;
  ip?: string;
}

/** What a verified assertion tells the callee. */
export interface VerifiedAssertion {
  /** The calling service. */
  readonly service: string;
  /** The call context the caller was running in, as far as the callee trusts it. */
  readonly context: CallContext;
}

const principalKinds: ReadonlySet<string> = new Set<PrincipalKind>(["operator", "user", "api_key", "service", "bootstrap"]);

/**
 * Signs and verifies the short-lived assertions services attach to calls
 * they make on behalf of a principal: an EdDSA JWT signed with the calling
 * service's own key (MeshKeys), addressed to one callee (`aud`), valid for
 * 30 seconds. The callee trusts the tenant and principal in an assertion
 * only because the service it names signed it for this callee; nothing a
 * browser, a tenant or another service holds can produce one.
 */
export class ServiceAssertions {
  readonly #keys: MeshKeys;

  constructor(keys: MeshKeys) {
    this.#keys = keys;
  }

  /** A development mesh's assertions for `service` (tests and tools). */
  static development(service: string): ServiceAssertions {
    return new ServiceAssertions(MeshKeys.development(service));
  }

  /** The service these assertions speak for. */
  get service(): string {
    return this.#keys.service;
  }

  /** An assertion carrying `ctx`, for a call to `audience`, valid for 30 seconds. */
  async sign(ctx: CallContext | undefined, audience: string): Promise<string> {
    const p = ctx?.principal;
    const claims: AssertionClaims = {
      rid: ctx?.requestId ?? "",
      ...(ctx?.tenantId !== undefined ? { ten: ctx.tenantId } : {}),
      ...(p !== undefined ? { pid: p.id, pk: p.kind, perm: [...p.permissions] } : {}),
      ...(p?.sessionId !== undefined ? { sid: p.sessionId } : {}),
      ...(p?.roles !== undefined && p.roles.length > 0 ? { rol: [...p.roles] } : {}),
      ...(p?.authTime !== undefined ? { at: p.authTime } : {}),
      ...(ctx?.platformReason !== undefined ? { plat: ctx.platformReason } : {}),
      ...(ctx?.clientIp !== undefined ? { ip: ctx.clientIp } : {}),
    };
    return new SignJWT({ ...claims })
      .setProtectedHeader({ alg: "EdDSA", kid: this.#keys.service })
      .setIssuer(issuerPrefix + this.#keys.service)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime(`${assertionLifetimeSeconds}s`)
      .sign(this.#keys.privateKey);
  }

  /**
   * Verifies an assertion addressed to this service; UNAUTHENTICATED if it
   * is forged, expired, malformed, signed by an unknown service or meant for
   * another one.
   */
  async verify(token: string): Promise<VerifiedAssertion> {
    let service: string;
    let claims: AssertionClaims;
    try {
      const kid = decodeProtectedHeader(token).kid;
      const key = typeof kid === "string" ? this.#keys.publicKey(kid) : undefined;
      if (key === undefined) throw unauthenticated("service assertion invalid");
      service = kid as string;
      const { payload } = await jwtVerify(token, key, { issuer: issuerPrefix + service, audience: this.#keys.service, algorithms: ["EdDSA"], clockTolerance: 5, maxTokenAge: assertionLifetimeSeconds + 5 });
      claims = payload as unknown as AssertionClaims;
    } catch (err) {
      const reason = err instanceof joseErrors.JWTExpired ? "expired" : "invalid";
      throw unauthenticated(`service assertion ${reason}`);
    }
    if (typeof claims.rid !== "string") throw unauthenticated("service assertion invalid");
    return { service, context: trustedContext(service, claims, this.#keys.service) };
  }
}

/**
 * The context a callee runs an asserted call in. No principal means the
 * caller's caller was anonymous: the callee sees an anonymous call (public
 * methods only), never the service's rights. Platform scope survives the hop
 * only for a platform principal (an operator, the bootstrap credential) or a
 * service holding the platform grant; a service without the grant asking
 * for it is downgraded to anonymous, and a tenant principal's call stays in
 * its tenant whatever the assertion says.
 */
function trustedContext(service: string, claims: AssertionClaims, callee: string): CallContext {
  const base = { requestId: claims.rid, clientIp: typeof claims.ip === "string" ? claims.ip : undefined };
  if (claims.pid === undefined || claims.pk === undefined || !principalKinds.has(claims.pk)) {
    return { ...base, tenantId: claims.ten };
  }
  const principal: Principal = {
    id: claims.pid,
    kind: claims.pk,
    tenantId: claims.ten,
    permissions: new Set(Array.isArray(claims.perm) ? claims.perm.filter((p): p is string => typeof p === "string") : []),
    sessionId: claims.sid,
    authTime: typeof claims.at === "number" ? claims.at : undefined,
    viaService: claims.pk === "service" ? undefined : service,
    ...(rolesOf(claims.rol).length > 0 ? { roles: rolesOf(claims.rol) } : {}),
  };
  const granted = platformScopeGrants.has(service);
  if (principal.kind === "service") {
    // A service acting as itself: only as the service that signed.
    if (principal.id !== `svc_${service}`) return { ...base, tenantId: claims.ten };
    if (isPlatformPrincipal(principal) && !granted) {
      // A service verifying a presented credential keeps exactly the verifier's permissions.
      if (isCredentialVerifier(principal) && claims.plat === undefined) return { ...base, principal };
      const self = serviceSelfGrants.get(service)?.get(callee);
      return self === undefined ? base : { ...base, principal: { ...principal, permissions: new Set(self) } };
    }
  }
  const platformReason = claims.plat !== undefined && (principal.kind === "operator" || principal.kind === "bootstrap" || (principal.kind === "service" && granted)) ? claims.plat : undefined;
  return { ...base, tenantId: claims.ten, principal, platformReason };
}
