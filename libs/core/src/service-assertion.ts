import { jwtVerify, SignJWT, errors as joseErrors } from "jose";
import type { CallContext, Principal, PrincipalKind } from "./context.js";
import { unauthenticated } from "./errors.js";

/** The metadata header that carries a signed service assertion. */
export const serviceAssertionHeader = "bulwark-service-assertion";

const issuer = "bulwark-mesh";
const lifetimeSeconds = 60;

interface AssertionClaims {
  svc: string;
  ten?: string;
  pid?: string;
  pk?: PrincipalKind;
  perm?: string[];
  sid?: string;
  rid: string;
  plat?: string;
}

/** What a verified assertion tells the callee. */
export interface VerifiedAssertion {
  /** The calling service. */
  readonly service: string;
  /** The call context the caller was running in. */
  readonly context: CallContext;
}

/**
 * Signs and verifies the short-lived assertions services attach to calls
 * they make on behalf of a principal (HS256 with BULWARK_SERVICE_SECRET,
 * which only services hold). The callee trusts the tenant and principal in
 * an assertion only because a service signed it; nothing a browser or a
 * tenant holds can produce one.
 */
export class ServiceAssertions {
  readonly #key: Uint8Array;
  readonly #service: string;

  constructor(secret: string, service: string) {
    this.#key = new TextEncoder().encode(secret);
    this.#service = service;
  }

  /** An assertion carrying `ctx`, valid for one minute. */
  async sign(ctx: CallContext | undefined): Promise<string> {
    const p = ctx?.principal;
    const claims: AssertionClaims = {
      svc: this.#service,
      rid: ctx?.requestId ?? "",
      ...(ctx?.tenantId !== undefined ? { ten: ctx.tenantId } : {}),
      ...(p !== undefined ? { pid: p.id, pk: p.kind, perm: [...p.permissions] } : {}),
      ...(p?.sessionId !== undefined ? { sid: p.sessionId } : {}),
      ...(ctx?.platformReason !== undefined ? { plat: ctx.platformReason } : {}),
    };
    return new SignJWT({ ...claims })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer(issuer)
      .setSubject(`svc_${this.#service}`)
      .setIssuedAt()
      .setExpirationTime(`${lifetimeSeconds}s`)
      .sign(this.#key);
  }

  /** Verifies an assertion; UNAUTHENTICATED if forged, expired or malformed. */
  async verify(token: string): Promise<VerifiedAssertion> {
    let claims: AssertionClaims;
    try {
      const { payload } = await jwtVerify(token, this.#key, { issuer, algorithms: ["HS256"], clockTolerance: 5 });
      claims = payload as unknown as AssertionClaims;
    } catch (err) {
      const reason = err instanceof joseErrors.JWTExpired ? "expired" : "invalid";
      throw unauthenticated(`service assertion ${reason}`);
    }
    if (typeof claims.svc !== "string" || typeof claims.rid !== "string") throw unauthenticated("service assertion invalid");
    // No principal means the caller's caller was anonymous: the callee sees
    // an anonymous call (public methods only), never the service's rights.
    const principal: Principal | undefined =
      claims.pid !== undefined && claims.pk !== undefined
        ? {
            id: claims.pid,
            kind: claims.pk,
            tenantId: claims.ten,
            permissions: new Set(claims.perm ?? []),
            sessionId: claims.sid,
            viaService: claims.pk === "service" ? undefined : claims.svc,
          }
        : undefined;
    return {
      service: claims.svc,
      context: { requestId: claims.rid, tenantId: claims.ten, principal, platformReason: claims.plat },
    };
  }
}
