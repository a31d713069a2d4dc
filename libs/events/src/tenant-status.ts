import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { BlockList, isIP } from "node:net";
import type { MeshKeys } from "@bulwark/core";
import { stderrLogger, describeError, type EventsLogger } from "./logger.js";

/** What a blocked tenant's entry says. */
export type BlockedState = "suspended" | "closing";

/** What every service must know about a tenant before admitting its calls. */
export interface TenantAccess {
  readonly state: BlockedState | "active";
  /** CIDR blocks the tenant's principals may call from; empty allows every address. */
  readonly ipAllowlist: readonly string[];
}

/** The KV bucket holding each tenant's access state, per subject prefix. */
export function tenantStatusBucket(subjectPrefix: string): string {
  return `${subjectPrefix}_tenant_status`;
}

/** The service that owns the bucket: the only one that may write it, and whose signature every entry carries. */
export const tenantStatusOwner = "tenancy";

/** Opens the tenant-status bucket, creating it: tenancy only (other services may not create or write it). */
export async function openTenantStatusBucket(nc: NatsConnection, subjectPrefix: string, replicas = 1): Promise<KV> {
  return new Kvm(nc).create(tenantStatusBucket(subjectPrefix), { history: 1, replicas });
}

/**
 * Writes a tenant's current access state: one signed entry per tenant that
 * was ever blocked or restricted, explicitly "active" once it is neither
 * (entries are never deleted, so a deletion is visibly someone else's
 * doing). The value is `<signature>.<json>`, the signature (tenancy's key)
 * binding the JSON to the key it is stored under. Idempotent, so
 * redelivered or reordered events converge on the state read from the
 * database.
 */
export async function recordTenantAccess(kv: KV, keys: MeshKeys, tenantId: string, access: TenantAccess): Promise<void> {
  if (access.state === "active" && access.ipAllowlist.length === 0 && (await kv.get(tenantId)) === null) return;
  const json = JSON.stringify({ s: access.state, ip: [...access.ipAllowlist] });
  await kv.put(tenantId, `${keys.sign(Buffer.from(`${tenantId}\n${json}`))}.${json}`);
}

/** The access an entry's value states, if tenancy signed it for this key. */
export function readTenantAccess(keys: MeshKeys, tenantId: string, value: string): TenantAccess | undefined {
  const dot = value.indexOf(".");
  if (dot <= 0) return undefined;
  const json = value.slice(dot + 1);
  if (!keys.verify(tenantStatusOwner, Buffer.from(`${tenantId}\n${json}`), value.slice(0, dot))) return undefined;
  try {
    const parsed = JSON.parse(json) as { s?: unknown; ip?: unknown };
    const state = parsed.s === "suspended" || parsed.s === "closing" || parsed.s === "active" ? parsed.s : undefined;
    const ip = Array.isArray(parsed.ip) ? parsed.ip.filter((c): c is string => typeof c === "string") : [];
    return state === undefined ? undefined : { state, ipAllowlist: ip };
  } catch {
    return undefined;
  }
}

interface Entry {
  readonly access: TenantAccess;
  readonly allow: BlockList | undefined;
}

/** How a TenantStatusCache is built. */
export interface TenantStatusCacheOptions {
  /** Checks each entry's signature (tenancy's public key). */
  readonly keys: MeshKeys;
  readonly logger?: EventsLogger;
  /** Pause before re-opening a watch that ended (NATS gone, bucket not created yet). */
  readonly retryMs?: number;
}

/**
 * Which tenants are suspended, closing or restricted to some addresses,
 * mirrored from the JetStream KV bucket tenancy keeps current from its own
 * events. Every service's call pipeline asks it, synchronously, before
 * admitting a tenant's call, so a suspension takes effect mesh-wide within
 * the time NATS needs to deliver one KV update — not when a cache expires.
 *
 * It fails closed: until the bucket's current state has been loaded,
 * `ready` is false (health is NOT_SERVING and the pipeline refuses tenant
 * calls); a watch that ends is re-opened; entries not signed by tenancy are
 * ignored, and a deletion never lifts a block.
 */
export class TenantStatusCache {
  readonly #entries = new Map<string, Entry>();
  readonly #keys: MeshKeys;
  readonly #logger: EventsLogger;
  readonly #retryMs: number;
  #ready = false;
  #stopped = false;
  #stopWatch: (() => void) | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: TenantStatusCacheOptions) {
    this.#keys = options.keys;
    this.#logger = options.logger ?? stderrLogger;
    this.#retryMs = options.retryMs ?? 1_000;
  }

  /** True once the bucket's state has been loaded. */
  get ready(): boolean {
    return this.#ready;
  }

  /**
   * Starts watching in the background; resolves once the current state has
   * been loaded, or after `waitMs` (still not ready: the cache keeps trying
   * and the service reports NOT_SERVING meanwhile).
   */
  async start(nc: NatsConnection, subjectPrefix: string, waitMs = 2_000): Promise<void> {
    let loaded!: () => void;
    const first = new Promise<void>((resolve) => (loaded = resolve));
    this.#loop = this.#run(nc, subjectPrefix, loaded);
    await Promise.race([first, new Promise((r) => setTimeout(r, waitMs).unref())]);
  }

  async #run(nc: NatsConnection, subjectPrefix: string, loaded: () => void): Promise<void> {
    let failures = 0;
    while (!this.#stopped && !nc.isClosed()) {
      try {
        await this.#watchOnce(nc, subjectPrefix, loaded);
        failures = 0;
      } catch (err) {
        if (failures++ % 30 === 0) this.#logger.warn({ err: describeError(err), bucket: tenantStatusBucket(subjectPrefix) }, "tenant-status bucket unavailable; retrying");
      }
      if (this.#stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#retryMs);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async #watchOnce(nc: NatsConnection, subjectPrefix: string, loaded: () => void): Promise<void> {
    // Open, never create: the bucket is tenancy's, and other services may not write it.
    const kv = await new Kvm(nc).open(tenantStatusBucket(subjectPrefix));
    const pending = (await kv.status()).values;
    const watch = await kv.watch({ include: "last_value" as never });
    this.#stopWatch = () => watch.stop();
    const fresh = new Map<string, Entry>();
    let initial = pending > 0;
    const finishInitial = (): void => {
      initial = false;
      // A reload replaces the map at once, so a restart never shows a half-loaded state.
      this.#entries.clear();
      for (const [k, v] of fresh) this.#entries.set(k, v);
      this.#ready = true;
      loaded();
    };
    if (!initial) finishInitial();
    for await (const e of watch) {
      const target = initial ? fresh : this.#entries;
      if (e.operation === "PUT") {
        const access = readTenantAccess(this.#keys, e.key, e.string());
        if (access === undefined) this.#logger.warn({ key: e.key.slice(0, 64) }, "tenant-status entry not signed by tenancy; ignored");
        else target.set(e.key, { access, allow: blockListOf(access.ipAllowlist) });
      } else {
        this.#logger.warn({ key: e.key.slice(0, 64), operation: e.operation }, "tenant-status entry deleted by someone other than tenancy; the last state stays in force");
      }
      if (initial && e.delta === 0) finishInitial();
    }
  }

  /** True when the tenant's calls must be refused (suspended or closing). */
  isBlocked(tenantId: string): boolean {
    const state = this.#entries.get(tenantId)?.access.state;
    return state === "suspended" || state === "closing";
  }

  /** True when `ip` may call as the tenant's principals (no allowlist, or inside it). An unknown address is refused by an allowlist. */
  allows(tenantId: string, ip: string | undefined): boolean {
    const allow = this.#entries.get(tenantId)?.allow;
    if (allow === undefined) return true;
    if (ip === undefined) return false;
    const family = isIP(ip);
    return family !== 0 && allow.check(ip, family === 4 ? "ipv4" : "ipv6");
  }

  stop(): void {
    this.#stopped = true;
    this.#stopWatch?.();
    this.#wake?.();
  }

  /** Resolves when the background loop has ended (after stop()). */
  async stopped(): Promise<void> {
    this.stop();
    await this.#loop;
  }
}

function blockListOf(cidrs: readonly string[]): BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split("/");
    const family = isIP(net ?? "");
    if (family === 0 || bits === undefined) continue;
    list.addSubnet(net!, Number(bits), family === 4 ? "ipv4" : "ipv6");
  }
  return list;
}
