import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { context as otelContext, propagation, SpanKind, SpanStatusCode, trace, type TextMapSetter } from "@opentelemetry/api";
import { currentContext, serviceAssertionHeader, tracer, type ServiceAssertions } from "@bulwark/core";
import { requestIdHeader } from "./pipeline.js";

const headerSetter: TextMapSetter<Headers> = { set: (carrier, key, value) => carrier.set(key, value) };

/**
 * The client half of tenant propagation: every outbound call carries the
 * current call context (tenant, principal, request id) as a service
 * assertion signed by this service, plus W3C trace context, inside a client
 * span. The callee trusts the tenant because a service signed it.
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
      throw err;
    } finally {
      span.end();
    }
  };
}

/**
 * A gRPC transport to another Bulwark service (`audience`, e.g. "tenancy")
 * that propagates the caller's context in assertions addressed to that
 * service only. Pass it to a typed client factory from @bulwark/contracts.
 */
export function createServiceTransport(baseUrl: string, assertions: ServiceAssertions, audience: string): Transport {
  return createGrpcTransport({ baseUrl, interceptors: [propagationInterceptor(assertions, audience)] });
}
