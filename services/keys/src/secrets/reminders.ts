import { SecretRotationDueSchema } from "@bulwark/contracts";
import { runInTenant, type Logger } from "@bulwark/core";
import type { EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";

/**
 * One run of the rotation reminders (inside the PeriodicJob's transaction,
 * platform scope): every secret whose newest version is older than its
 * rotation period, and whose newest version was not reminded yet, gets
 * bulwark.keys.secret.rotation_due — once per version; storing a new
 * version starts the period again.
 */
export async function remindDueSecrets(em: EntityManager, events: EventPublisher, logger: Logger, now: Date): Promise<number> {
  const due = await em.execute<{ id: string; tenant_id: string; name: string; current_version: number; updated_at: Date; rotation_period_s: number }[]>(
    `select id, tenant_id, name, current_version, updated_at, rotation_period_s from secrets
     where rotation_period_s is not null and reminded_version < current_version and updated_at + make_interval(secs => rotation_period_s) <= ?
     order by updated_at limit 500 for update skip locked`,
    [now],
  );
  for (const s of due) {
    const dueUnix = BigInt(Math.floor(new Date(s.updated_at).getTime() / 1000) + s.rotation_period_s);
    await runInTenant(s.tenant_id, () =>
      events.publish(em, { aggregate: "secret", verb: "rotation_due", aggregateId: s.id, schema: SecretRotationDueSchema, payload: { $typeName: "bulwark.events.v1.SecretRotationDue", secretId: s.id, name: s.name, version: s.current_version, dueUnix } }),
    );
    await em.execute("update secrets set reminded_version = ? where id = ?", [s.current_version, s.id]);
  }
  if (due.length > 0) logger.info({ reminded: due.length }, "secrets due for rotation");
  return due.length;
}
