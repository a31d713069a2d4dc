import { Code, ConnectError } from "@connectrpc/connect";
import { runAsPlatform, describeError, type Logger } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { keysUsageCapBucket } from "@bulwark/events";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

/** Opens (creating if needed) the usage-cap bucket, `<prefix>_keys_usage`, which keys alone may write. */
export async function openUsageCapBucket(nc: NatsConnection, subjectPrefix: string, replicas = 1): Promise<KV> {
  return new Kvm(nc).create(keysUsageCapBucket(subjectPrefix), { history: 1, replicas });
}

/** How many compare-and-set attempts one use makes before giving up (heavy contention). */
const maxAttempts = 50;

/**
 * Usage caps that hold exactly across any number of keys replicas: each
 * cap is one entry of a JetStream KV bucket holding the uses left, and a
 * use is a compare-and-set (`update` with the entry's revision), which
 * JetStream applies atomically on the stream's leader; a replica that
 * loses the race re-reads and tries again. So N uses succeed, never N+1,
 * whatever the interleaving. Nothing is written to Postgres per use; an
 * entry missing from the bucket (a lost bucket) is re-created once from
 * Postgres (`fallback`: the limit less the batched usage count, which can
 * lag by the batch interval).
 */
export class UsageCaps {
  readonly #kv: KV;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Sets a new cap's counter (a fresh key). */
  async init(capId: string, limit: bigint): Promise<void> {
    try {
      await this.#kv.create(capId, String(limit));
    } catch {
      // Already there (a retried creation): the counter that exists wins.
    }
  }

  /** Uses left, or undefined when the counter is missing. */
  async peek(capId: string): Promise<bigint | undefined> {
    const e = await this.#kv.get(capId);
    return e === null || e.operation !== "PUT" ? undefined : BigInt(e.string());
  }

  /** Takes one use: the uses left afterwards, or undefined when none was left. */
  async take(capId: string, fallback: () => Promise<bigint>): Promise<bigint | undefined> {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const e = await this.#kv.get(capId);
      if (e === null || e.operation !== "PUT") {
        const start = await fallback();
        try {
          await this.#kv.create(capId, String(start > 0n ? start : 0n));
        } catch {
          // Another replica re-created it first; read theirs.
        }
        continue;
      }
      const left = BigInt(e.string());
      if (left <= 0n) return undefined;
      try {
        await this.#kv.update(capId, String(left - 1n), e.revision);
        return left - 1n;
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
      }
    }
    throw new ConnectError("the API key's usage counter is busy; retry", Code.Unavailable);
  }
}

function isWrongSequence(err: unknown): boolean {
  const text = `${(err as { message?: unknown }).message ?? ""} ${(err as { code?: unknown }).code ?? ""} ${(err as { api_error?: { err_code?: number } }).api_error?.err_code ?? ""}`;
  return /wrong last sequence|10071/i.test(text);
}

/**
 * Per-key rate limits, enforced by each keys replica on its own with a
 * sliding window (the previous fixed window weighted by how much of it
 * still overlaps, plus the current one — Cloudflare's approximation). Exact
 * within one replica (to the approximation's error when traffic within a
 * window is uneven); across R replicas behind a balancer each admits up to
 * the limit, so a window admits at most R × limit. Exact caps are what
 * usage limits are for.
 */
export class RateLimiter {
  readonly #windows = new Map<string, { start: number; current: number; previous: number }>();
  #sweepAt = 0;

  /** True (and counted) if one more verification of `id` fits `limit` per `windowMs`. */
  allow(id: string, limit: number, windowMs: number, now = Date.now()): boolean {
    const start = now - (now % windowMs);
    let w = this.#windows.get(id);
    if (w === undefined || start - w.start >= 2 * windowMs) w = { start, current: 0, previous: 0 };
    else if (start !== w.start) w = { start, current: 0, previous: w.current };
    const estimate = w.previous * (1 - (now - start) / windowMs) + w.current;
    this.#windows.set(id, w);
    this.#sweep(now);
    if (estimate + 1 > limit) return false;
    w.current++;
    return true;
  }

  #sweep(now: number): void {
    if (now < this.#sweepAt) return;
    this.#sweepAt = now + 60_000;
    for (const [id, w] of this.#windows) if (now - w.start > 2 * 86_400_000) this.#windows.delete(id);
  }
}

/**
 * Last-used times and usage counts, gathered in memory and written in one
 * statement per interval (and on stop), so verification writes nothing to
 * Postgres per call. A crash loses at most one interval's counts.
 */
export class UsageRecorder {
  readonly #db: Database;
  readonly #logger: Logger;
  #pending = new Map<string, { n: number; last: Date }>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(db: Database, logger: Logger) {
    this.#db = db;
    this.#logger = logger;
  }

  /** Counts one verification of a key. */
  record(keyId: string, at = new Date()): void {
    const p = this.#pending.get(keyId);
    if (p === undefined) this.#pending.set(keyId, { n: 1, last: at });
    else {
      p.n++;
      p.last = at;
    }
  }

  /** Starts writing every `intervalMs`. */
  start(intervalMs: number): void {
    this.#timer = setInterval(() => void this.flush(), intervalMs);
    this.#timer.unref();
  }

  /** Writes what was gathered; failures keep the counts for the next try. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#write());
    return this.#flushing;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }

  async #write(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    const ids = [...batch.keys()];
    const counts = ids.map((id) => batch.get(id)!.n);
    const times = ids.map((id) => batch.get(id)!.last.toISOString());
    try {
      await runAsPlatform("record API key usage in batches", () =>
        this.#db.transaction((em) =>
          em.execute(
            `update api_keys k set usage_count = k.usage_count + v.n, last_used_at = greatest(coalesce(k.last_used_at, v.t), v.t)
               from (select unnest(?::text[]) as id, unnest(?::bigint[]) as n, unnest(?::timestamptz[]) as t) v where k.id = v.id`,
            [`{${ids.join(",")}}`, `{${counts.join(",")}}`, `{${times.map((t) => `"${t}"`).join(",")}}`],
          ),
        ),
      );
    } catch (err) {
      for (const [id, p] of batch) {
        const now = this.#pending.get(id);
        this.#pending.set(id, now === undefined ? p : { n: now.n + p.n, last: now.last > p.last ? now.last : p.last });
      }
      this.#logger.warn({ err: describeError(err), keys: ids.length }, "could not write API key usage; keeping it for the next try");
    }
  }
}
