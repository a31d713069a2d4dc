import type { ServiceModule } from "@bulwark/server";
import { complianceContext, type ComplianceOptions } from "./context.js";
import { deletionsPart } from "./deletions/part.js";
import { sharedMigrations } from "./migrations/index.js";
import type { CompliancePart } from "./part.js";
import { requestsPart } from "./requests/part.js";
import { posturePart } from "./posture/part.js";
import { reviewsPart } from "./reviews/part.js";
import { retentionPart } from "./retention/part.js";

/**
 * The parts of the compliance service, one per folder: data-subject
 * requests and legal holds with their saga across the mesh (requests/),
 * the deletion of closed tenants (deletions/). Posture, access reviews and
 * retention add their parts here.
 */
export const complianceParts: readonly CompliancePart[] = [requestsPart, deletionsPart, posturePart, reviewsPart, retentionPart];

/** The compliance service made of `parts` (tests pass a clock, or swap a part). */
export function complianceModuleOf(parts: readonly CompliancePart[], options: ComplianceOptions = {}): ServiceModule {
  const ctx = (deps: Parameters<typeof complianceContext>[0]) => complianceContext(deps, { ...options, parts });
  return {
    name: "compliance",
    entities: parts.flatMap((p) => p.entities),
    migrations: [...sharedMigrations, ...parts.flatMap((p) => p.migrations ?? [])],
    services: (deps) => parts.flatMap((p) => p.registrations(ctx(deps))),
    consumers: (deps) => parts.flatMap((p) => p.consumers?.(ctx(deps)) ?? []),
    onStart: async (deps) => {
      for (const p of parts) await p.start?.(ctx(deps));
    },
    onStop: async (deps) => {
      for (const p of [...parts].reverse()) await p.stop?.(ctx(deps));
    },
    jobs: (deps) => parts.flatMap((p) => p.jobs?.(ctx(deps)) ?? []),
  };
}

/** The compliance service as the runtime starts it. */
export const complianceModule: ServiceModule = complianceModuleOf(complianceParts);
