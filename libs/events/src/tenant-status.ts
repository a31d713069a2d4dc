import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

/** What a blocked tenant's entry says. */
export type BlockedState = "suspended" | "closing";

/** The KV bucket holding blocked tenants, per subject prefix. */
export function tenantStatusBucket(subjectPrefix: string): string {
  return `${subjectPrefix}_tenant_status`;
}

/** Opens (creating if needed) the tenant-status bucket. */
export async function openTenantStatusBucket(nc: NatsConnection, subjectPrefix: string): Promise<KV> {
  return new Kvm(nc).create(tenantStatusBucket(subjectPrefix), { history: 1 });
}

/**
 * Which tenants are suspended or closing, mirrored from a JetStream KV
 * bucket that tenancy keeps current from its own events. Every service's
 * call pipeline asks it, synchronously, before admitting a tenant's call, so
 * a suspension takes effect mesh-wide within the time NATS needs to deliver
 * one KV update — not when a cache expires.
 */
export class TenantStatusCache {
  readonly #blocked = new Map<string, BlockedState>();
  #stop: (() => void) | undefined;
  #ready: Promise<void> | undefined;

  /** Starts watching; resolves once the current state has been loaded. */
  async start(nc: NatsConnection, subjectPrefix: string): Promise<void> {
    const kv = await openTenantStatusBucket(nc, subjectPrefix);
    const watch = await kv.watch({ include: "last_value" as never });
    this.#stop = () => watch.stop();
    let resolveReady!: () => void;
    this.#ready = new Promise((r) => (resolveReady = r));
    const pending = (await kv.status()).values;
    let seen = 0;
    if (pending === 0) resolveReady();
    void (async () => {
      for await (const e of watch) {
        if (e.operation === "PUT") {
          const value = e.string();
          if (value === "suspended" || value === "closing") this.#blocked.set(e.key, value);
          else this.#blocked.delete(e.key);
        } else this.#blocked.delete(e.key);
        seen++;
        if (seen >= pending) resolveReady();
      }
    })();
    await Promise.race([this.#ready, new Promise((r) => setTimeout(r, 2000).unref())]);
  }

  isBlocked(tenantId: string): boolean {
    return this.#blocked.has(tenantId);
  }

  stop(): void {
    this.#stop?.();
  }
}

/**
 * Writes a tenant's current state into the bucket: an entry for a blocked
 * tenant, none for an active one. Idempotent, so redelivered or reordered
 * events converge on the state read from the database.
 */
export async function recordTenantState(kv: KV, tenantId: string, state: BlockedState | "active"): Promise<void> {
  if (state === "active") await kv.delete(tenantId);
  else await kv.put(tenantId, state);
}
