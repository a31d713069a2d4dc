import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ApiKeyExpiringSchema } from "@bulwark/contracts";
import { runAsPlatform, runInTenant, type Logger } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { revokeRow } from "./api-key-service.js";
import { queryRows } from "./rows.js";

/** How far ahead owners are warned of an expiry. */
export const expiryWarningDays = 7;
/** Rows one run handles at most (the next run takes the rest). */
const batch = 500;

/** The scheduler's name for the job. */
export const housekeepingJob = "api_key_housekeeping";

/** What the housekeeping job needs. */
export interface KeyHousekeepingOptions {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly logger: Logger;
  /** After a run that changed something: drop revoked keys from this replica's cache, nudge the relay. */
  readonly changed: (revokedKeyIds: readonly string[]) => void;
}

/**
 * The API keys' periodic work: warn owners seven days before a key expires
 * (`key.expiring`, once per key) and revoke the old keys whose rotation
 * overlap ended (reason "rotation_ended"; they were already refused).
 * The runtime's Scheduler runs it on one replica per period (the part's
 * `jobs`); each run is one transaction that marks the rows it handles
 * (`for update skip locked`), so a run taken over after a crash, or two
 * runs that overlap, never warn twice, and a crashed run is redone by the
 * next.
 */
export class KeyHousekeeping {
  readonly #o: KeyHousekeepingOptions;

  constructor(options: KeyHousekeepingOptions) {
    this.#o = options;
  }

  /** One run; returns how many warnings it published and keys it revoked. */
  async runOnce(now = new Date()): Promise<{ warned: number; revoked: number }> {
    const revokedIds: string[] = [];
    const result = await runAsPlatform("API key housekeeping: expiry warnings and ended rotations", () =>
      this.#o.db.transaction(async (em) => {
        const horizon = new Date(now.getTime() + expiryWarningDays * 86_400_000);
        const expiring = await queryRows(em, 
          "select * from api_keys where state = 'active' and expiry_warned_at is null and expires_at <= ? and expires_at > ? order by expires_at limit ? for update skip locked",
          [horizon, now, batch],
        );
        for (const r of expiring) {
          await runInTenant(r.tenant_id, () =>
            this.#o.events.publish(em, {
              aggregate: "key",
              verb: "expiring",
              aggregateId: r.id,
              schema: ApiKeyExpiringSchema,
              payload: create(ApiKeyExpiringSchema, { keyId: r.id, ownerUserId: r.owner_id, name: r.name, expireTime: timestampFromDate(r.expires_at) }),
            }),
          );
        }
        if (expiring.length > 0) await em.execute("update api_keys set expiry_warned_at = ? where id in (?)", [now, expiring.map((r) => r.id)]);
        const ended = await queryRows(em, "select * from api_keys where state = 'active' and rotation_deadline is not null and rotation_deadline <= ? limit ? for update skip locked", [now, batch]);
        for (const r of ended) {
          await runInTenant(r.tenant_id, () => revokeRow(em, this.#o.events, r, "rotation_ended", now));
          revokedIds.push(r.id);
        }
        return { warned: expiring.length, revoked: ended.length };
      }),
    );
    if (result.warned + result.revoked > 0) this.#o.changed(revokedIds);
    return result;
  }
}
