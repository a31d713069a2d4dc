import { AsyncLocalStorage } from "node:async_hooks";

/** What kind of principal made a call. */
export type PrincipalKind = "operator" | "user" | "api_key" | "service" | "bootstrap";

/**
 * Who is calling, as derived from a verified credential. Tenant principals
 * carry `tenantId`; platform principals (operators, the bootstrap
 * credential) carry none and act across tenants only in an explicit
 * platform scope.
 */
export interface Principal {
  /** Type-prefixed id: `opr_…`, `usr_…`, `key_…`, `svc_…`, or `bootstrap`. */
  readonly id: string;
  readonly kind: PrincipalKind;
  /** The tenant the credential belongs to; undefined for platform principals. */
  readonly tenantId?: string | undefined;
  /** Effective permissions; `*` grants every permission. */
  readonly permissions: ReadonlySet<string>;
  /** The session an access token belongs to, for revocation. */
  readonly sessionId?: string | undefined;
  /** The service that relayed the call on the principal's behalf, if any. */
  readonly viaService?: string | undefined;
  /**
   * The role ids the principal held when its credential was issued (an
   * access token's `roles` claim), carried into events for the audit trail.
   * Authorization reads `permissions`, never this.
   */
  readonly roles?: readonly string[] | undefined;
  /**
   * When the user last proved who they are (sign-in or re-authentication),
   * Unix seconds: the access token's `auth_time` claim. Sensitive
   * self-service changes ask for it to be recent (step-up); undefined for
   * credentials that carry none, which never count as recent.
   */
  readonly authTime?: number | undefined;
}

/**
 * The per-call context: set by the server interceptor, read by the db layer
 * (row-level security), the event outbox (envelope and NATS headers), the
 * client interceptor (signed service assertion) and the logger.
 */
export interface CallContext {
  readonly requestId: string;
  /** The tenant every query and event of this call is scoped to. */
  readonly tenantId?: string | undefined;
  readonly principal?: Principal | undefined;
  /**
   * Set only by `runAsPlatform`: the call may read and write across tenants.
   * The string says why, and is logged and carried into events.
   */
  readonly platformReason?: string | undefined;
  /**
   * The caller's address: the connection's peer, or the client a trusted
   * proxy forwarded for (TRUSTED_PROXIES); never a header an untrusted
   * caller chose. IPv4-mapped IPv6 addresses are given as IPv4.
   */
  readonly clientIp?: string | undefined;
  /** The caller's User-Agent header (at most 256 characters), where the call came from a client. */
  readonly userAgent?: string | undefined;
}

const storage = new AsyncLocalStorage<CallContext>();

/** The context of the running call, if any. */
export function currentContext(): CallContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `ctx` as the call context of everything it awaits. */
export function runWithContext<T>(ctx: CallContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/**
 * Runs `fn` in the explicit platform scope: database access is no longer
 * limited to one tenant. Use it only for work that is cross-tenant by nature
 * (operators listing tenants, relays, schedulers), and say why; the reason
 * is visible in code review, in logs and in the events it produces.
 */
export function runAsPlatform<T>(reason: string, fn: () => T): T {
  const parent = storage.getStore();
  return storage.run({ ...(parent ?? { requestId: newRequestId() }), platformReason: reason }, fn);
}

/**
 * Runs `fn` scoped to one tenant, keeping the caller's principal and request
 * id. Platform principals use it to act inside a single tenant (e.g. an
 * operator suspending a tenant writes that tenant's rows and events).
 */
export function runInTenant<T>(tenantId: string, fn: () => T): T {
  const parent = storage.getStore();
  return storage.run({ ...(parent ?? { requestId: newRequestId() }), tenantId, platformReason: undefined }, fn);
}

let counter = 0;
const prefix = Math.random().toString(36).slice(2, 8);

/** A request id, `req_` prefixed, unique enough to find a call in the logs. */
export function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `req_${prefix}${Date.now().toString(36)}${counter.toString(36)}`;
}

/** True if the principal holds the permission (directly or through `*`). */
export function hasPermission(principal: Principal, permission: string): boolean {
  return principal.permissions.has("*") || principal.permissions.has(permission);
}

/** True for principals that belong to no tenant and may act across tenants. */
export function isPlatformPrincipal(principal: Principal): boolean {
  return principal.kind === "operator" || principal.kind === "bootstrap" || (principal.kind === "service" && principal.tenantId === undefined);
}

/**
 * Runs `fn` scoped to the tenant a request names. A platform principal acts
 * inside that tenant; a tenant principal stays in its own tenant whatever
 * the request names, so row-level security answers "not found" for any
 * other tenant's data instead of trusting the request.
 */
export function runForTenant<T>(requestedTenantId: string, fn: () => T): T {
  const ctx = storage.getStore();
  const principal = ctx?.principal;
  if (principal !== undefined && !isPlatformPrincipal(principal)) return fn();
  return runInTenant(requestedTenantId, fn);
}

/**
 * Runs `fn` as a Bulwark service acting on its own behalf — a scheduler, a
 * consumer, or a public RPC that must read what its anonymous caller may
 * not (identity reading a tenant's policy during sign-in). Calls made inside
 * carry the service principal, inside `tenantId` if given; without this, a
 * call made for an anonymous caller stays anonymous downstream.
 */
export function runAsService<T>(service: string, tenantId: string | undefined, fn: () => T): T {
  const parent = storage.getStore();
  const principal: Principal = { id: `svc_${service}`, kind: "service", tenantId, permissions: new Set(["*"]) };
  return storage.run({ requestId: parent?.requestId ?? newRequestId(), tenantId, principal, clientIp: parent?.clientIp }, fn);
}
