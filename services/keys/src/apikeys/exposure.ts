import { timingSafeEqual } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ApiKeyExposedSchema } from "@bulwark/contracts";
import { describeError, parseApiKey, runAsPlatform, runInTenant, type Logger } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { revokeRow } from "./api-key-service.js";
import { queryRows } from "./rows.js";
import { secretHash } from "./verifier.js";

/** One string reported as found in public. */
export interface ExposedString {
  readonly token: string;
  readonly url: string;
  readonly source: string;
}

/** What ExposureReports needs. */
export interface ExposureReportsOptions {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly pepper: string;
  readonly logger: Logger;
  /** After a revocation commits: drop the key from this replica's cache, nudge the relay. */
  readonly revoked: (keyId: string) => void;
  /** Reports accepted per second by this replica, and the burst (default 10 and 20). */
  readonly perSecond?: number;
  readonly burst?: number;
}

/** The most strings waiting to be checked; reports beyond it are refused until the queue drains. */
const maxQueued = 10_000;

/**
 * ReportExposedKeys' work, done after the answer so that neither its
 * content nor its timing tells a reporter whether a string was a live key:
 * each well-formed string with a valid checksum is looked up, its secret
 * compared (a key id alone, which listings show, revokes nothing), and a
 * live key is revoked with reason "exposed" together with
 * `key.exposed` (owner, where it was found) for the owner to be told.
 * A token bucket per replica rate-limits reporters (RESOURCE_EXHAUSTED);
 * nothing reported is logged, only counts.
 */
export class ExposureReports {
  readonly #o: ExposureReportsOptions;
  readonly #queue: ExposedString[] = [];
  #tokens: number;
  #refilledAt = Date.now();
  #draining: Promise<void> | undefined;

  constructor(options: ExposureReportsOptions) {
    this.#o = options;
    this.#tokens = options.burst ?? 20;
  }

  /** Accepts a report (RESOURCE_EXHAUSTED beyond the rate) and checks it in the background. */
  report(strings: readonly ExposedString[]): void {
    this.#take();
    if (this.#queue.length + strings.length > maxQueued) throw new ConnectError("too many reports are waiting; retry later", Code.ResourceExhausted);
    // Only strings that can be keys at all are worth a lookup; the rest are dropped here, unseen.
    for (const s of strings) if (parseApiKey(s.token.trim()) !== undefined) this.#queue.push({ ...s, token: s.token.trim() });
    this.#draining ??= this.#drain().finally(() => (this.#draining = undefined));
  }

  /** Resolves when everything queued so far has been handled (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  #take(): void {
    const now = Date.now();
    const rate = this.#o.perSecond ?? 10;
    const burst = this.#o.burst ?? 20;
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilledAt) / 1000) * rate);
    this.#refilledAt = now;
    if (this.#tokens < 1) throw new ConnectError("too many reports; retry later", Code.ResourceExhausted);
    this.#tokens -= 1;
  }

  async #drain(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    let revoked = 0;
    for (let s = this.#queue.shift(); s !== undefined; s = this.#queue.shift()) {
      try {
        if (await this.#handle(s)) revoked++;
      } catch (err) {
        this.#o.logger.warn({ err: describeError(err) }, "could not check a reported string; it is dropped");
      }
    }
    if (revoked > 0) this.#o.logger.info({ revoked }, "revoked API keys reported as exposed");
  }

  async #handle(s: ExposedString): Promise<boolean> {
    const parsed = parseApiKey(s.token);
    if (parsed === undefined) return false;
    const row = (await runAsPlatform("look up an API key reported as exposed", () => this.#o.db.transaction((em) => queryRows(em, "select * from api_keys where id = ?", [parsed.id]))))[0];
    if (row === undefined || !timingSafeEqual(secretHash(this.#o.pepper, parsed.secret), row.secret_hash) || row.state !== "active") return false;
    const done = await runInTenant(row.tenant_id, () =>
      this.#o.db.transaction(async (em) => {
        const locked = (await queryRows(em, "select * from api_keys where id = ? for update", [row.id]))[0];
        if (locked === undefined || locked.state !== "active") return false;
        await this.#o.events.publish(em, {
          aggregate: "key",
          verb: "exposed",
          aggregateId: row.id,
          schema: ApiKeyExposedSchema,
          payload: create(ApiKeyExposedSchema, { keyId: row.id, ownerUserId: row.owner_id, name: row.name, url: s.url.slice(0, 2048), source: s.source.slice(0, 100) }),
        });
        await revokeRow(em, this.#o.events, locked, "exposed", new Date());
        return true;
      }),
    );
    if (done) this.#o.revoked(row.id);
    return done;
  }
}
