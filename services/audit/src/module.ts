import type { ServiceModule } from "@bulwark/server";
import { auditContext } from "./context.js";
import { ingestPart } from "./ingest/part.js";
import { logPart } from "./log/part.js";
import { migrations } from "./migrations/index.js";
import type { AuditPart } from "./part.js";
import { treePart } from "./tree/part.js";
import { retentionPart } from "./retention/part.js";
import { monitoringPart } from "./monitoring/part.js";
import { participantPart } from "./participant/part.js";

/**
 * The parts of the audit service, one per folder: the Merkle log of each
 * tenant and its signed checkpoints (tree/), the consumers that record
 * every service's events (ingest/), the read RPCs (log/), and compliance's
 * data-subject participant (participant/).
 */
export const auditParts: readonly AuditPart[] = [treePart, ingestPart, logPart, retentionPart, monitoringPart, participantPart];

/** The audit service made of `parts` (tests swap a part for one with other settings). */
export function auditModuleOf(parts: readonly AuditPart[]): ServiceModule {
  return {
    name: "audit",
    entities: parts.flatMap((p) => p.entities),
    migrations,
    services: (deps) => {
      const ctx = auditContext(deps);
      return parts.flatMap((p) => p.registrations(ctx));
    },
    consumers: (deps) => parts.flatMap((p) => p.consumers?.(auditContext(deps)) ?? []),
    onStart: async (deps) => {
      for (const p of parts) await p.start?.(auditContext(deps));
    },
    onStop: async (deps) => {
      for (const p of [...parts].reverse()) await p.stop?.(auditContext(deps));
    },
    jobs: (deps) => parts.flatMap((p) => p.jobs?.(auditContext(deps)) ?? []),
  };
}

/** The audit service as the runtime starts it. */
export const auditModule: ServiceModule = auditModuleOf(auditParts);
