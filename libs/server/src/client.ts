import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { DescMethod } from "@bufbuild/protobuf";
import { context as otelContext, propagation, SpanKind, SpanStatusCode, trace, type TextMapSetter } from "@opentelemetry/api";
import { currentContext, serviceAssertionHeader, tracer, type ServiceAssertions } from "@bulwark/core";
import { requestIdHeader } from "./pipeline.js";

const headerSetter: TextMapSetter<Headers> = { set: (carrier, key, value) => carrier.set(key, value) };

/** Node error codes that mean the callee could not be reached or the connection broke. */
const transportCodes = /^(ECONN|EPIPE|ETIMEDOUT|ENOTFOUND|EAI_|EHOSTUNREACH|ENETUNREACH|ERR_HTTP2_|ERR_STREAM_PREMATURE_CLOSE|UND_ERR)/;

/**
 * True for an error the client side produced because the callee was
 * unreachable or the connection broke mid-call (connect-node attaches the
 * Node error as `cause`), as opposed to an error the callee answered.
 */
function isTransportFailure(err: ConnectError): boolean {
  const code = (err.cause as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && transportCodes.test(code)) return true;
  // connect-node reports a stream or session the peer reset (a replica dying mid-call) as CANCELED or ABORTED with these words.
  return /\b(ECONNREFUSED|ECONNRESET|EPIPE|socket hang up)\b|http\/2 (stream|session) (closed|error)|stream closed with error code|premature close/i.test(err.rawMessage);
}

/**
 * The error a caller sees when another service fails us: UNAVAILABLE naming
 * the service, never its address (connect-node's messages carry
 * `connect ECONNREFUSED 10.0.3.7:50051`), and a connection reset mid-call is
 * UNAVAILABLE too, not ABORTED (which means "a concurrent change won").
 */
export function dependencyError(err: unknown, service: string): unknown {
  if (!(err instanceof ConnectError) || !isTransportFailure(err)) return err;
  return new ConnectError(`${service} is unavailable; retry`, Code.Unavailable, undefined, undefined, err);
}

/**
 * The client half of tenant propagation: every outbound call carries the
 * current call context (tenant, principal, request id) as a service
 * assertion signed by this service for `audience` only, plus W3C trace
 * context, inside a client span. The callee trusts the tenant because a
 * service signed it for the callee.
 */
export function propagationInterceptor(assertions: ServiceAssertions, audience: string): Interceptor {
  return (next) => async (req) => {
    const ctx = currentContext();
    req.header.set(serviceAssertionHeader, await assertions.sign(ctx, audience));
    if (ctx !== undefined) req.header.set(requestIdHeader, ctx.requestId);
    const span = tracer().startSpan(`${req.service.typeName}/${req.method.name}`, { kind: SpanKind.CLIENT, attributes: { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name } });
    const active = trace.setSpan(otelContext.active(), span);
    propagation.inject(active, req.header, headerSetter);
    try {
      return await otelContext.with(active, () => next(req));
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw dependencyError(err, audience);
    } finally {
      span.end();
    }
  };
}

/** How a service transport retries. */
export interface ServiceTransportOptions {
  /** Attempts of a side-effect-free call that fails with UNAVAILABLE (across the URLs). */
  readonly attempts?: number;
  /** Pause before the 2nd, 3rd, … attempt. */
  readonly backoffMs?: readonly number[];
  /** How long a replica that answered or failed with UNAVAILABLE is skipped while others remain (1 s). */
  readonly ejectMs?: number;
}

/** True when the callee refused the connection (nothing was sent), looking through the error's causes. */
function refused(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === "ECONNREFUSED") return true;
  }
  return false;
}

/** True for a method that may be called again safely: declared `idempotency_level = NO_SIDE_EFFECTS` (or IDEMPOTENT). */
function retriable(method: DescMethod): boolean {
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS || method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT;
}

/**
 * A gRPC transport to another Bulwark service (`audience`, e.g. "tenancy")
 * that propagates the caller's context in assertions addressed to that
 * service only. `baseUrls` is one URL (in Kubernetes, the Service, which
 * balances) or several comma-separated replicas: a call that cannot reach
 * one is tried on the next. Calls the proto declares free of side effects
 * are retried on UNAVAILABLE with a short backoff, within the caller's
 * deadline; others are tried once, so nothing happens twice. Pass it to a
 * typed client factory from @bulwark/contracts.
 */
export function createServiceTransport(baseUrls: string, assertions: ServiceAssertions, audience: string, options: ServiceTransportOptions = {}): Transport {
  const urls = baseUrls.split(",").map((u) => u.trim()).filter((u) => u !== "");
  const replicas = urls.map((baseUrl) => ({ transport: createGrpcTransport({ baseUrl, interceptors: [propagationInterceptor(assertions, audience)] }), downUntil: 0 }));
  if (replicas.length === 0) throw new Error(`no URL for ${audience}`);
  const attempts = Math.max(1, options.attempts ?? 3);
  const backoff = options.backoffMs ?? [50, 250];
  const ejectMs = options.ejectMs ?? 1_000;
  let next = 0;
  // Round robin over the replicas that have not just failed; when every one has, over all of them.
  const pick = (): (typeof replicas)[number] => {
    const now = Date.now();
    for (let i = 0; i < replicas.length; i++) {
      const r = replicas[next++ % replicas.length]!;
      if (r.downUntil <= now) return r;
    }
    return replicas[next++ % replicas.length]!;
  };
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const tries = retriable(method) ? attempts : 1;
      const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
      for (let i = 0; ; i++) {
        const replica = pick();
        try {
          return await replica.transport.unary(method, signal, deadline === undefined ? undefined : Math.max(1, deadline - Date.now()), header, input, contextValues);
        } catch (err) {
          // A replica that is unreachable (or says it is unavailable) is skipped for a moment, so the retry and
          // the next calls go to the others instead of finding the dead one again by turn.
          if (err instanceof ConnectError && err.code === Code.Unavailable && replicas.length > 1) replica.downUntil = Date.now() + ejectMs;
          const wait = backoff[Math.min(i, backoff.length - 1)] ?? 0;
          // A refused connection carried nothing to the callee: any call may go to another replica, once per replica.
          if (refused(err) && i + 1 < replicas.length && signal?.aborted !== true) continue;
          const again = i + 1 < tries && err instanceof ConnectError && err.code === Code.Unavailable && signal?.aborted !== true && (deadline === undefined || Date.now() + wait < deadline);
          if (!again) throw err;
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    },
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return pick().transport.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  };
}
