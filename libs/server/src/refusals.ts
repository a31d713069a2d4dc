import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CallsRefusedSchema } from "@bulwark/contracts";
import { describeError, newRequestId, runAsPlatform, runWithContext, type Logger, type Principal } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";

/** One refused call as the pipeline saw it. */
export interface Refusal {
  readonly rpc: string;
  /** "Unauthenticated" or "PermissionDenied". */
  readonly code: string;
  readonly tenantId: string | undefined;
  readonly principal: Principal | undefined;
  readonly clientIp: string | undefined;
  readonly reason: string;
}

/** How a RefusalReporter is built. */
export interface RefusalReporterOptions {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly logger: Logger;
  /** How often the window is flushed (default 1 s). */
  readonly flushMs?: number;
  /** Distinct keys kept per window; later ones fold into one overflow event per tenant and code (default 500). */
  readonly maxKeys?: number;
  /** Called after a flush committed (the runtime nudges the outbox relay). */
  readonly afterCommit?: () => void;
}

interface Bucket {
  readonly refusal: Refusal;
  count: number;
  first: Date;
  last: Date;
  overflow: boolean;
}

/**
 * Reports the pipeline's authentication failures and permission denials
 * as signed events for the audit trail (`<service>.call.authentication_failed`,
 * `<service>.call.denied`, payload CallsRefused). They change no state, so
 * they have no outbox row of their own: the reporter counts them in memory
 * per (tenant, method, code, principal, address) and writes one event per
 * key and window, with the count, in one transaction per tenant. A flood
 * (a brute-force storm) therefore costs a bounded number of rows a second:
 * at most `maxKeys` keys per window, the rest folded into one overflow
 * event per tenant and code. Reporting never slows or fails the refused call.
 */
export class RefusalReporter {
  readonly #o: RefusalReporterOptions;
  readonly #maxKeys: number;
  #window = new Map<string, Bucket>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;

  constructor(options: RefusalReporterOptions) {
    this.#o = options;
    this.#maxKeys = options.maxKeys ?? 500;
  }

  /** Counts one refusal (synchronous, allocation-light). */
  report(r: Refusal): void {
    const now = new Date();
    const key = `${r.tenantId ?? ""}\u0000${r.rpc}\u0000${r.code}\u0000${r.principal?.id ?? ""}\u0000${r.clientIp ?? ""}`;
    let b = this.#window.get(key);
    if (b === undefined && this.#window.size >= this.#maxKeys) {
      const overflowKey = `${r.tenantId ?? ""}\u0000*\u0000${r.code}`;
      b = this.#window.get(overflowKey);
      if (b === undefined) {
        b = { refusal: { ...r, rpc: "*", principal: undefined, clientIp: undefined, reason: "refusals beyond the reporting limit" }, count: 0, first: now, last: now, overflow: true };
        this.#window.set(overflowKey, b);
      }
    } else if (b === undefined) {
      b = { refusal: r, count: 0, first: now, last: now, overflow: false };
      this.#window.set(key, b);
    }
    b.count += 1;
    b.last = now;
  }

  /** Starts the flush timer. */
  start(): void {
    const tick = (): void => {
      void this.flush().finally(() => {
        if (this.#timer !== undefined) this.#timer = setTimeout(tick, this.#o.flushMs ?? 1000).unref();
      });
    };
    this.#timer = setTimeout(tick, this.#o.flushMs ?? 1000).unref();
  }

  /** Writes the current window's events (tests call it directly). */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  /** Stops the timer and flushes what is left. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#flushing;
    await this.flush();
  }

  async #flush(): Promise<void> {
    if (this.#window.size === 0) return;
    const window = this.#window;
    this.#window = new Map();
    const byTenant = new Map<string, Bucket[]>();
    for (const b of window.values()) {
      const t = b.refusal.tenantId ?? "";
      byTenant.set(t, [...(byTenant.get(t) ?? []), b]);
    }
    for (const [tenantId, buckets] of byTenant) {
      const write = (): Promise<void> =>
        this.#o.db.transaction(async (em) => {
          for (const b of buckets) {
            const r = b.refusal;
            // The envelope's actor is the refused principal (none for a failed authentication).
            await runWithContext({ requestId: newRequestId(), tenantId: tenantId === "" ? undefined : tenantId, principal: r.principal, platformReason: tenantId === "" ? "calls refused outside any tenant" : undefined }, () =>
              this.#o.events.publish(em, {
                aggregate: "call",
                verb: r.code === "Unauthenticated" ? "authentication_failed" : "denied",
                aggregateId: r.rpc,
                schema: CallsRefusedSchema,
                payload: create(CallsRefusedSchema, {
                  rpc: r.rpc,
                  code: r.code,
                  principalId: r.principal?.id ?? "",
                  ipAddress: r.clientIp ?? "",
                  count: b.count,
                  firstTime: timestampFromDate(b.first),
                  lastTime: timestampFromDate(b.last),
                  reason: r.reason.slice(0, 200),
                  overflow: b.overflow,
                }),
              }),
            );
          }
        });
      try {
        if (tenantId === "") await runAsPlatform("report calls refused outside any tenant", write);
        else await runWithContext({ requestId: newRequestId(), tenantId }, write);
        this.#o.afterCommit?.();
      } catch (err) {
        this.#o.logger.warn({ err: describeError(err), tenantId: tenantId === "" ? undefined : tenantId, events: buckets.length }, "reporting refused calls failed; those counts are lost");
      }
    }
  }
}
