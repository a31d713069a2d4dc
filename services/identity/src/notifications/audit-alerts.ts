import { isMessage } from "@bufbuild/protobuf";
import { AuditAlertRaisedSchema } from "@bulwark/contracts";
import { describeError } from "@bulwark/core";
import { EventConsumer } from "@bulwark/events";
import type { RuntimeDeps } from "@bulwark/server";
import { streamOf, type ConsumerSpec } from "@bulwark/server";
import { identityContext, type IdentityContext } from "../context.js";
import { userState } from "../users/mappers.js";
import { smtpMailer, type Mailer } from "./mailer.js";

/** The roles whose holders are told of a tenant's audit alerts. */
export const alertRecipientRoles = ["system:owner", "system:admin"];

const mailers = new WeakMap<RuntimeDeps, Mailer>();

function mailerOf(ctx: IdentityContext): Mailer {
  let m = mailers.get(ctx.deps);
  if (m === undefined) {
    m = smtpMailer(ctx.deps.config, ctx.deps.logger.child({ part: "audit-alerts" }));
    mailers.set(ctx.deps, m);
  }
  return m;
}

/**
 * Mails each alert of audit's monitoring rules (bulwark.audit.alert.raised,
 * signed by audit) to the tenant's active owners and administrators. The
 * consumer's inbox makes a redelivery send nothing twice; a stream that does
 * not exist yet (audit not deployed) is waited for, as every consumer does.
 * The mail says which rule fired and when, and names no address (the alert
 * carries only a keyed hash).
 */
export function auditAlertConsumer(ctx: IdentityContext): ConsumerSpec {
  const prefix = ctx.deps.config.EVENTS_SUBJECT_PREFIX;
  return {
    stream: streamOf(prefix, "audit").name,
    source: "audit",
    durable: "identity_audit_alerts",
    filterSubjects: [`${prefix}.audit.alert.raised`],
    maxDeliver: 12,
    backoffMs: [1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000],
    ackWaitMs: 60_000,
    handle: async ({ envelope, payload }, em) => {
      if (envelope.tenantId === "" || !isMessage(payload, AuditAlertRaisedSchema)) return;
      const admins = await em.execute<{ id: string; email: string; display_name: string }[]>(
        `select distinct u.id, u.email, u.display_name from users u join user_roles r on r.user_id = u.id where r.role_id in (${alertRecipientRoles.map(() => "?").join(", ")}) and u.state = ?`,
        [...alertRecipientRoles, userState.active],
      );
      const when = payload.occurredAt !== undefined ? new Date(Number(payload.occurredAt.seconds) * 1000).toISOString() : "";
      for (const a of admins) {
        const text = [
          `Hello ${a.display_name || a.email},`,
          "",
          `A monitoring rule of your organisation's audit trail fired: ${payload.rule} (${payload.severity}).`,
          payload.summary,
          when ? `Last occurrence: ${when}.` : "",
          "",
          "Look at the audit trail for the events that made it fire; the alert itself is recorded there too.",
        ]
          .filter((l, i, all) => l !== "" || (i > 0 && all[i - 1] !== ""))
          .join("\n");
        await mailerOf(ctx).send({ to: a.email, subject: `Security alert: ${payload.rule.replaceAll("_", " ")}`, text }, { kind: "audit_alert", userId: a.id });
      }
    },
  };
}

/** The alert consumer of one started service, started in the background (audit's stream may not exist yet). */
const running = new WeakMap<RuntimeDeps, { stop(): Promise<void> }>();

/** Starts the alert consumer, retrying every second until audit's stream exists. */
export function startAuditAlerts(deps: RuntimeDeps): void {
  const ctx = identityContext(deps);
  const logger = deps.logger.child({ part: "audit-alerts" });
  const consumer = new EventConsumer({ ...auditAlertConsumer(ctx), db: deps.db, nc: deps.nc, js: deps.js, logger, keys: deps.keys, subjectPrefix: deps.config.EVENTS_SUBJECT_PREFIX });
  let stopped = false;
  let started = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const loop = (async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        await consumer.start();
        started = true;
        return;
      } catch (err) {
        if (attempt % 60 === 0) logger.info({ err: describeError(err) }, "audit's alert stream is not there yet; waiting for it");
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, 1_000);
      });
    }
  })();
  running.set(deps, {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
      await loop;
      if (started) await consumer.stop();
    },
  });
}

export async function stopAuditAlerts(deps: RuntimeDeps): Promise<void> {
  await running.get(deps)?.stop();
  running.delete(deps);
}
