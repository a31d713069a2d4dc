import { describeError, runInTenant, type Logger } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { RotationPeriods } from "./policy.js";
import type { KeyRings, RingKind } from "./rings.js";

/** The shortest rotation period a policy allows (1 day): rings rotated more recently are never due. */
const minimumPeriodMs = 86_400_000;
/** Rings rotated per run at most; the rest wait for the next round. */
const batch = 200;

/**
 * One run of the periodic rotation (inside the PeriodicJob's transaction,
 * in the platform scope): every enabled ring whose current version is
 * older than its tenant's encryption_key_rotation_period gets a new
 * version, and bulwark.keys.key_ring.rotated says `automatic`. Tenants
 * whose policy cannot be read now are skipped until the next run.
 */
export async function rotateDueRings(em: EntityManager, rings: KeyRings, periods: RotationPeriods, logger: Logger, now: Date): Promise<number> {
  const candidates = await em.execute<{ id: string; tenant_id: string | null; kind: RingKind; rotated_at: Date }[]>(
    "select id, tenant_id, kind, rotated_at from key_rings where state = 'enabled' and current_version > 0 and rotated_at <= ? order by rotated_at limit ?",
    [new Date(now.getTime() - minimumPeriodMs), batch],
  );
  let rotated = 0;
  for (const c of candidates) {
    const period = await periods.of(c.tenant_id);
    if (period === undefined || new Date(c.rotated_at).getTime() + period * 1000 > now.getTime()) continue;
    try {
      const rotate = (): Promise<unknown> => rings.rotateIn(em, c.id, true);
      // The event belongs to the ring's tenant; the transaction stays in the platform scope.
      await (c.tenant_id === null ? rotate() : runInTenant(c.tenant_id, rotate));
      rings.forget(c.id);
      rotated++;
    } catch (err) {
      logger.warn({ keyId: c.id, err: describeError(err) }, "periodic rotation of a key ring failed");
      throw err;
    }
  }
  if (rotated > 0) logger.info({ rotated }, "key rings rotated by their period");
  return rotated;
}
