import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, timestampNow } from "@bufbuild/protobuf/wkt";
import { newId, newRequestId, type CallContext, type Principal, type PrincipalKind } from "@bulwark/core";
import { ActorKind, ActorSchema, EnvelopeSchema, type Actor, type Envelope } from "@bulwark/contracts";
import { context, propagation } from "@opentelemetry/api";

/** NATS header names that carry the call context next to the envelope. */
export const EventHeaders = {
  tenant: "bulwark-tenant",
  principal: "bulwark-principal",
  requestId: "bulwark-request-id",
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

const actorKinds: Record<PrincipalKind, ActorKind> = {
  operator: ActorKind.OPERATOR,
  user: ActorKind.USER,
  api_key: ActorKind.API_KEY,
  service: ActorKind.SERVICE,
  bootstrap: ActorKind.BOOTSTRAP,
};

const principalKinds = new Map<ActorKind, PrincipalKind>(
  Object.entries(actorKinds).map(([kind, actor]) => [actor, kind as PrincipalKind]),
);

/** What a domain event says, before the envelope adds who, when and where. */
export interface EventInput<Desc extends DescMessage> {
  /** The subject and type, `bulwark.<service>.<aggregate>.<verb>`. */
  readonly type: string;
  readonly aggregateId: string;
  readonly schema: Desc;
  readonly payload: MessageShape<Desc>;
}

/**
 * Wraps a payload in an `Envelope` stamped from the current call: tenant,
 * actor, request id and W3C trace context, so whoever consumes the event
 * can restore all of them.
 */
export function buildEnvelope<Desc extends DescMessage>(source: string, ctx: CallContext | undefined, input: EventInput<Desc>): Envelope {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return create(EnvelopeSchema, {
    id: newId("evt"),
    type: input.type,
    source,
    tenantId: ctx?.tenantId ?? "",
    actor: actorFor(source, ctx?.principal),
    occurTime: timestampNow(),
    requestId: ctx?.requestId ?? "",
    traceparent: carrier["traceparent"] ?? "",
    tracestate: carrier["tracestate"] ?? "",
    aggregateId: input.aggregateId,
    payload: anyPack(input.schema, input.payload),
    platform: ctx?.platformReason !== undefined,
    platformReason: ctx?.platformReason ?? "",
    clientIp: ctx?.clientIp ?? "",
    userAgent: ctx?.userAgent ?? "",
  });
}

/** The NATS headers published with an envelope (empty values left out). */
export function headersFor(envelope: Envelope): Record<string, string> {
  const entries: [string, string][] = [
    [EventHeaders.tenant, envelope.tenantId],
    [EventHeaders.principal, envelope.actor?.id ?? ""],
    [EventHeaders.requestId, envelope.requestId],
    [EventHeaders.traceparent, envelope.traceparent],
    [EventHeaders.tracestate, envelope.tracestate],
  ];
  return Object.fromEntries(entries.filter(([, v]) => v !== ""));
}

/**
 * The actor of an event: the caller's principal, or the publishing service
 * itself when a scheduler or consumer acts with no principal.
 */
function actorFor(source: string, principal: Principal | undefined): Actor {
  if (principal === undefined) return create(ActorSchema, { id: `svc_${source}`, kind: ActorKind.SERVICE });
  return create(ActorSchema, { id: principal.id, kind: actorKinds[principal.kind], viaService: principal.viaService ?? "", roles: principal.roles === undefined ? [] : [...principal.roles] });
}

/**
 * The call context a consumer runs an event's handler in: the event's tenant
 * and request id, and its actor as the principal, relayed by the event's
 * source service and holding no permissions (a consumer acts on the event,
 * not with the actor's rights). Only an event whose signed `platform` flag
 * says so runs in the explicit platform scope; one that merely lacks a
 * tenant runs with no tenant and no platform scope, where row-level security
 * shows nothing and refuses every write.
 */
export function contextFromEnvelope(envelope: Envelope): CallContext {
  const actor = envelope.actor;
  const principal: Principal | undefined =
    actor === undefined || actor.id === ""
      ? undefined
      : {
          id: actor.id,
          kind: principalKinds.get(actor.kind) ?? "service",
          tenantId: envelope.tenantId === "" ? undefined : envelope.tenantId,
          permissions: new Set<string>(),
          viaService: envelope.source,
          // Kept so that an event written while handling this one names the same actor's roles.
          ...(actor.roles.length > 0 ? { roles: [...actor.roles] } : {}),
        };
  const requestId = envelope.requestId === "" ? newRequestId() : envelope.requestId;
  if (envelope.tenantId === "") {
    return envelope.platform ? { requestId, principal, platformReason: envelope.platformReason || `platform-wide event ${envelope.type}` } : { requestId, principal };
  }
  return { requestId, tenantId: envelope.tenantId, principal };
}
