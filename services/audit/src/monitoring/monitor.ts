import { createHash } from "node:crypto";
import { create, type Message } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuditAlertRaisedSchema, contractRegistry } from "@bulwark/contracts";
import type { Statements } from "@bulwark/db";
import type { ConsumedEvent, EventPublisher } from "@bulwark/events";
import { actionOf, effectiveSettings, mayConcern, signalsOf, type RuleConfig, type RuleName } from "./rules.js";

/** Hashes a value under the tenant's audit hash key (`hmac-sha256:…`). */
export interface KeyedHasher {
  keyedHash(tenantId: string, value: string): Promise<string>;
}

/** The payload's top-level scalar fields by proto name, as text. */
export function scalarFields(payload: Message | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (payload === undefined) return out;
  const desc = contractRegistry.getMessage(payload.$typeName);
  for (const f of desc?.fields ?? []) {
    if (f.fieldKind !== "scalar" && f.fieldKind !== "enum") continue;
    const v = (payload as unknown as Record<string, unknown>)[f.localName];
    if (v === undefined || v === "" || v instanceof Uint8Array) continue;
    out.set(f.name, String(v));
  }
  return out;
}

/**
 * Evaluates the tenant's rules on one event inside the consumer's
 * transaction (tenant in context, so every table is the tenant's only); a
 * rule that fires publishes `audit.alert.raised` through audit's outbox in
 * the same transaction — identity mails it to the tenant's administrators,
 * and audit's own consumer records it in the trail.
 */
export class Monitor {
  constructor(
    private readonly prefix: string,
    private readonly hasher: KeyedHasher,
    private readonly events: EventPublisher,
  ) {}

  /**
   * Whether any rule could act on the event, from the event alone (no
   * settings read): `handle` on any other event does nothing, so the
   * consumer acknowledges it without a transaction. A role change counts
   * whatever the role, since which roles are administrative is a setting.
   */
  relevant(event: ConsumedEvent): boolean {
    const { envelope } = event;
    if (envelope.tenantId === "" || envelope.platform) return false;
    const action = actionOf(envelope.type, this.prefix);
    if (action.startsWith("audit.alert.")) return false;
    // Most events are settled by their action and actor alone, without decoding the payload.
    if (!mayConcern(action, envelope)) return false;
    const fields = scalarFields(event.payload);
    return signalsOf(action, envelope, fields, [fields.get("role_id") ?? ""]).length > 0;
  }

  async handle(event: ConsumedEvent, em: Statements): Promise<void> {
    const { envelope } = event;
    const tenantId = envelope.tenantId;
    if (tenantId === "" || envelope.platform) return;
    const action = actionOf(envelope.type, this.prefix);
    if (action.startsWith("audit.alert.")) return;
    const [row] = await em.execute<{ rules: unknown }[]>("select rules from monitor_settings where tenant_id = ?", [tenantId]);
    const settings = effectiveSettings(row?.rules);
    const signals = signalsOf(action, envelope, scalarFields(event.payload), settings.adminRoles);
    if (signals.length === 0) return;
    const at = envelope.occurTime !== undefined ? new Date(Number(envelope.occurTime.seconds) * 1000 + Math.floor(envelope.occurTime.nanos / 1e6)) : new Date();
    for (const s of signals) {
      if (s.kind === "admin_role") {
        if (s.held) await em.execute("insert into monitor_known (tenant_id, kind, subject, value, first_seen) values (?, 'admin', ?, ?, ?) on conflict do nothing", [tenantId, s.userId, s.roleId, at]);
        else await em.execute("delete from monitor_known where tenant_id = ? and kind = 'admin' and subject = ? and value = ?", [tenantId, s.userId, s.roleId]);
        continue;
      }
      const cfg = settings.rules[s.rule];
      if (!cfg.enabled) continue;
      if (s.kind === "count") {
        // Addresses are counted under their keyed hash, never in the clear.
        const addressHash = s.key.startsWith("ip:") ? await this.hasher.keyedHash(tenantId, s.key.slice(3)) : undefined;
        const key = addressHash ?? s.key;
        const since = new Date(at.getTime() - cfg.windowSeconds * 1000);
        await em.execute("insert into monitor_hits (tenant_id, rule, key, event_id, at) values (?, ?, ?, ?, ?) on conflict do nothing", [tenantId, s.rule, key, envelope.id, at]);
        await em.execute("delete from monitor_hits where tenant_id = ? and rule = ? and key = ? and at < ?", [tenantId, s.rule, key, since]);
        const hits = await em.execute<{ event_id: string }[]>("select event_id from monitor_hits where tenant_id = ? and rule = ? and key = ? and at >= ? order by at desc", [tenantId, s.rule, key, since]);
        if (hits.length < cfg.threshold) continue;
        if (!(await this.#claim(em, tenantId, s.rule, key, at, cfg))) continue;
        await this.#fire(em, envelope.id, s.rule, cfg, {
          summary: s.summary(hits.length, cfg.windowSeconds),
          subjectId: s.subjectId ?? "",
          addressHash: addressHash ?? "",
          count: hits.length,
          windowSeconds: cfg.windowSeconds,
          eventIds: hits.slice(0, 20).map((h) => h.event_id),
          at,
        });
      } else if (s.kind === "new_address") {
        const hash = await this.hasher.keyedHash(tenantId, s.address);
        const [known] = await em.execute<{ n: string }[]>("select count(*) as n from monitor_known where tenant_id = ? and kind = ? and subject = ?", [tenantId, s.rule, s.subjectId]);
        const inserted = await em.execute<{ value: string }[]>("insert into monitor_known (tenant_id, kind, subject, value, first_seen) values (?, ?, ?, ?, ?) on conflict do nothing returning value", [tenantId, s.rule, s.subjectId, hash, at]);
        // The very first address of a principal is not news; a further new one is.
        if (inserted.length === 0 || Number(known?.n ?? 0) === 0) continue;
        await this.#fire(em, envelope.id, s.rule, cfg, { summary: s.summary, subjectId: s.subjectId, addressHash: hash, count: 1, windowSeconds: 0, eventIds: [envelope.id], at });
      } else {
        if (s.requiresAdmin !== undefined) {
          const [admin] = await em.execute<{ n: string }[]>("select count(*) as n from monitor_known where tenant_id = ? and kind = 'admin' and subject = ?", [tenantId, s.requiresAdmin]);
          if (Number(admin?.n ?? 0) === 0) continue;
        }
        await this.#fire(em, envelope.id, s.rule, cfg, { summary: s.summary, subjectId: s.subjectId ?? "", addressHash: "", count: 1, windowSeconds: 0, eventIds: [envelope.id], at });
      }
    }
  }

  /** One alert per rule and key per window: true if this firing is the window's first. */
  async #claim(em: Statements, tenantId: string, rule: RuleName, key: string, at: Date, cfg: RuleConfig): Promise<boolean> {
    const rows = await em.execute<{ fired_at: Date }[]>(
      `insert into monitor_fired (tenant_id, rule, key, fired_at) values (?, ?, ?, ?)
       on conflict (tenant_id, rule, key) do update set fired_at = excluded.fired_at where monitor_fired.fired_at < ?
       returning fired_at`,
      [tenantId, rule, key, at, new Date(at.getTime() - cfg.windowSeconds * 1000)],
    );
    return rows.length > 0;
  }

  async #fire(
    em: Statements,
    eventId: string,
    rule: RuleName,
    cfg: RuleConfig,
    a: { summary: string; subjectId: string; addressHash: string; count: number; windowSeconds: number; eventIds: string[]; at: Date },
  ): Promise<void> {
    const alertId = `alr_${createHash("sha256").update(`${eventId}\n${rule}`).digest("base64url").slice(0, 22)}`;
    await this.events.publish(em, {
      aggregate: "alert",
      verb: "raised",
      aggregateId: alertId,
      schema: AuditAlertRaisedSchema,
      payload: create(AuditAlertRaisedSchema, {
        alertId,
        rule,
        severity: cfg.severity,
        summary: a.summary,
        subjectId: a.subjectId,
        addressHash: a.addressHash,
        count: a.count,
        windowSeconds: a.windowSeconds,
        eventIds: a.eventIds,
        occurredAt: timestampFromDate(a.at),
      }),
    });
  }
}
