import { createDataSubjectParticipantClient, createKeysClients, createIdentityClients, type DataSubjectParticipantClient, type IdentityClients, type KeysClients } from "@bulwark/contracts";
import type { ServiceConfig } from "@bulwark/core";
import { createServiceTransport, type RuntimeDeps } from "@bulwark/server";
import type { CompliancePart } from "./part.js";

/** How a compliance service is built beyond its environment (tests inject the clock). */
export interface ComplianceOptions {
  /** The time; default the system clock. Tenant deletions and export expiry read it. */
  readonly clock?: () => Date;
}

/** What module.ts passes: the options and the service's parts. */
export interface ContextOptions extends ComplianceOptions {
  readonly parts?: readonly CompliancePart[];
}

/** The URL of a mesh service, from its *_URL variable. */
export function serviceUrl(config: ServiceConfig, service: string): string {
  switch (service) {
    case "tenancy":
      return config.TENANCY_URL;
    case "identity":
      return config.IDENTITY_URL;
    case "keys":
      return config.KEYS_URL;
    case "audit":
      return config.AUDIT_URL;
    default:
      return config.COMPLIANCE_URL;
  }
}

/**
 * What the compliance service's parts share beyond the runtime: the
 * participants (each service's DataSubjectParticipant, in the order of
 * COMPLIANCE_PARTICIPANTS), typed clients of keys and identity, and the
 * clock.
 */
export interface ComplianceContext {
  readonly deps: RuntimeDeps;
  readonly clock: () => Date;
  /** The service's parts (compliance's own participant erases what each holds about a deleted tenant). */
  readonly parts: readonly CompliancePart[];
  /** Each participant service by name (compliance itself is served in process, not listed). */
  readonly participants: ReadonlyMap<string, DataSubjectParticipantClient>;
  readonly keys: KeysClients;
  readonly identity: IdentityClients;
}

const contexts = new WeakMap<RuntimeDeps, ComplianceContext>();

/** The compliance context of one started service (created on first use). */
export function complianceContext(deps: RuntimeDeps, options: ContextOptions = {}): ComplianceContext {
  let ctx = contexts.get(deps);
  if (ctx === undefined) {
    const participants = new Map<string, DataSubjectParticipantClient>();
    for (const service of deps.config.COMPLIANCE_PARTICIPANTS) {
      if (service === "compliance") continue;
      // One attempt per call: the saga retries with its own back-off and records each failure.
      participants.set(service, createDataSubjectParticipantClient(createServiceTransport(serviceUrl(deps.config, service), deps.assertions, service, { attempts: 1 })));
    }
    ctx = {
      deps,
      clock: options.clock ?? (() => new Date()),
      parts: options.parts ?? [],
      participants,
      keys: createKeysClients(createServiceTransport(deps.config.KEYS_URL, deps.assertions, "keys")),
      identity: createIdentityClients(createServiceTransport(deps.config.IDENTITY_URL, deps.assertions, "identity")),
    };
    contexts.set(deps, ctx);
  }
  return ctx;
}
