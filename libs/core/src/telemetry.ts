import { context, propagation, trace, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { AlwaysOffSampler, AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { resourceFromAttributes } from "@opentelemetry/resources";

let provider: BasicTracerProvider | undefined;

/**
 * Installs tracing once per process: W3C trace context propagation (across
 * gRPC metadata and NATS headers) always, and span export over OTLP/HTTP only
 * when OTEL_EXPORTER_OTLP_ENDPOINT is set. Without an exporter spans still
 * get ids, so logs and events carry a trace id that correlates calls.
 */
export async function initTelemetry(service: string, otlpEndpoint?: string): Promise<void> {
  if (provider !== undefined) return;
  const spanProcessors: SpanProcessor[] = [];
  if (otlpEndpoint !== undefined) {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: `${otlpEndpoint.replace(/\/$/, "")}/v1/traces` })));
  }
  provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": `bulwark-${service}` }),
    spanProcessors,
    // Without an exporter nothing would read a recorded span: spans are not
    // sampled, which keeps their ids (for logs and propagation) and costs
    // almost nothing per call. With one, follow the caller's decision.
    sampler: otlpEndpoint === undefined ? new AlwaysOffSampler() : new ParentBasedSampler({ root: new AlwaysOnSampler() }),
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
}

/** Flushes and stops span export (on shutdown). */
export async function shutdownTelemetry(): Promise<void> {
  await provider?.shutdown();
}

/** The tracer Bulwark's libraries create spans with. */
export function tracer(): Tracer {
  return trace.getTracer("bulwark");
}
