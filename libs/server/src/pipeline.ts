import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { context as otelContext, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type TextMapGetter } from "@opentelemetry/api";
import {
  authorize,
  describeError,
  isPlatformPrincipal,
  newRequestId,
  permissionDenied,
  resolvePrincipal,
  ruleOf,
  runWithContext,
  serviceAssertionHeader,
  toConnectError,
  tracer,
  validateMessage,
  type CallContext,
  type CredentialResolver,
  type Logger,
  type Principal,
  type ServiceAssertions,
} from "@bulwark/core";

/** The header a platform principal uses to act inside one tenant. */
export const tenantHeader = "bulwark-tenant";
/** The header carrying a caller-chosen request id (echoed back). */
export const requestIdHeader = "x-request-id";

/**
 * Tells whether a tenant's calls must be refused: suspended or closing, or
 * from an address outside the tenant's allowlist. Fed by tenancy's events in
 * every service; see TenantStatusCache.
 */
export interface TenantGate {
  /** False until the tenants' state has loaded: tenant calls are refused meanwhile (fail closed). */
  readonly ready: boolean;
  isBlocked(tenantId: string): boolean;
  /** True when `ip` may call as the tenant's principals. */
  allows(tenantId: string, ip: string | undefined): boolean;
}

/**
 * Where the pipeline reports each finished call (RED metrics): `code` is
 * "OK" or the Connect code's name ("NotFound"), `seconds` the time from
 * admission to the answer. See ServiceMetrics.
 */
export interface RpcMetrics {
  observe(method: DescMethod, code: string, seconds: number): void;
}

/** What the pipeline needs to admit a call. */
export interface CallPipelineOptions {
  readonly resolvers: readonly CredentialResolver[];
  readonly assertions: ServiceAssertions;
  readonly logger: Logger;
  readonly tenantGate?: TenantGate | undefined;
  readonly metrics?: RpcMetrics | undefined;
}

const headerGetter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};

const requestIdPattern = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * The server-side interceptor chain, written once and run by every protocol
 * path (the gRPC fast path and connect-node for Connect and gRPC-Web):
 * request id → trace span → credential → tenant derivation → tenant gate →
 * authorization rule → edge validation → handler in the call context →
 * error mapping. Handlers therefore see a validated request and a context
 * whose tenant came from the credential, never from a header alone.
 */
export class CallPipeline {
  readonly #opts: CallPipelineOptions;

  constructor(opts: CallPipelineOptions) {
    this.#opts = opts;
  }

  /** Admits and runs one unary call; always rejects with a ConnectError. */
  async run<I extends DescMessage>(method: DescMethod, request: unknown, hctx: HandlerContext, next: () => Promise<unknown>): Promise<unknown> {
    const headers = hctx.requestHeader;
    const supplied = headers.get(requestIdHeader);
    const requestId = supplied !== null && requestIdPattern.test(supplied) ? supplied : newRequestId();
    hctx.responseHeader.set(requestIdHeader, requestId);
    const parent = headers.has("traceparent") ? propagation.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
    const span = tracer().startSpan(`${method.parent.typeName}/${method.name}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": method.parent.typeName, "rpc.method": method.name } }, parent);
    let ctx: CallContext = { requestId };
    const started = performance.now();
    let code = "OK";
    try {
      ctx = await this.#admit(method, headers, requestId, undefined);
      validateMessage(method.input as I, request as never);
      return await otelContext.with(trace.setSpan(parent, span), () => runWithContext(ctx, next));
    } catch (err) {
      const ce = toConnectError(err, requestId);
      span.setStatus({ code: SpanStatusCode.ERROR, message: Code[ce.code] });
      this.#log(ctx, method, ce);
      code = Code[ce.code];
      throw ce;
    } finally {
      span.end();
      this.#opts.metrics?.observe(method, code, (performance.now() - started) / 1000);
    }
  }

  async #admit(method: DescMethod, headers: Headers, requestId: string, peerIp: string | undefined): Promise<CallContext> {
    const assertion = headers.get(serviceAssertionHeader);
    let principal: Principal | undefined;
    let platformReason: string | undefined;
    let assertedTenant: string | undefined;
    // The caller's address: the connection's peer, or for a relayed call the address the calling service saw.
    let clientIp: string | undefined = peerIp;
    if (assertion !== null) {
      const verified = await this.#opts.assertions.verify(assertion);
      principal = verified.context.principal;
      platformReason = verified.context.platformReason;
      assertedTenant = verified.context.tenantId;
      clientIp = verified.context.clientIp ?? peerIp;
    } else {
      try {
        principal = await resolvePrincipal(this.#opts.resolvers, headers);
      } catch (err) {
        // A public method serves anonymous callers: a stale or foreign
        // credential sent along (an expired token at sign-in) is ignored.
        if (ruleOf(method)?.public !== true) throw err;
      }
    }
    const requested = headers.get(tenantHeader) ?? undefined;
    let tenantId: string | undefined;
    if (principal !== undefined && principal.tenantId !== undefined) {
      if (requested !== undefined && requested !== principal.tenantId) throw permissionDenied("the credential does not belong to the requested tenant");
      tenantId = principal.tenantId;
      this.#gate(tenantId, principal, clientIp);
    } else if (principal !== undefined && isPlatformPrincipal(principal)) {
      tenantId = requested ?? assertedTenant;
    }
    authorize(method, principal);
    return { requestId, tenantId, principal, platformReason, clientIp };
  }

  /**
   * The tenant gate for a tenant principal: refused while the tenants'
   * state has not loaded (UNAVAILABLE), when the tenant is suspended or
   * closing, and — for the tenant's own users and keys, not Bulwark services
   * acting on their own — from an address outside its allowlist.
   */
  #gate(tenantId: string, principal: Principal, clientIp: string | undefined): void {
    const gate = this.#opts.tenantGate;
    if (gate === undefined) return;
    if (!gate.ready) throw new ConnectError("the tenant gate is loading; retry", Code.Unavailable);
    if (gate.isBlocked(tenantId)) throw permissionDenied("the tenant is suspended or closing");
    if (principal.kind !== "service" && !gate.allows(tenantId, clientIp)) throw permissionDenied("the client address is not in the tenant's IP allowlist");
  }

  #log(ctx: CallContext, method: DescMethod, err: ConnectError): void {
    const fields = { requestId: ctx.requestId, tenantId: ctx.tenantId, principal: ctx.principal?.id, rpc: `${method.parent.typeName}/${method.name}`, code: Code[err.code] };
    if (err.code === Code.Internal || err.code === Code.Unknown || err.code === Code.DataLoss) {
      this.#opts.logger.error({ ...fields, cause: describeError(err.cause) }, "call failed");
    } else if (err.code === Code.Unavailable) {
      this.#opts.logger.warn({ ...fields, cause: describeError(err.cause) }, "dependency unavailable");
    } else {
      this.#opts.logger.debug(fields, "call refused");
    }
  }
}
