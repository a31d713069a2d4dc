import type { AuditPart } from "../part.js";

/**
 * The Merkle log of each tenant: the periodic checkpoint job (on the
 * shared scheduler: one replica per period) signs every tree that grew.
 * Appends happen in ingest/, on-demand signing in log/.
 */
export const treePart: AuditPart = {
  name: "tree",
  entities: [],
  registrations: () => [],
  jobs: (ctx) => [
    {
      name: "checkpoints",
      everyMs: ctx.settings.checkpointIntervalMs,
      timeoutMs: Math.max(30_000, ctx.settings.checkpointIntervalMs),
      run: async ({ signal }) => ({ signed: await ctx.checkpoints.signGrown(signal) }),
    },
    {
      name: "partitions",
      everyMs: 86_400_000,
      timeoutMs: 60_000,
      runAsPlatform: "audit: create the coming months' entries partitions",
      run: async () => {
        await ctx.deps.db.transaction((em) => em.execute("select audit_ensure_partition(now() + (n || ' month')::interval) from generate_series(0, 2) as n"));
      },
    },
  ],
};
