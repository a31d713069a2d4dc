import { fromBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, type ResolveTenantResponse, type GetSecurityPolicyResponse, type TenancyClient } from "@bulwark/contracts";
import { currentContext } from "@bulwark/core";
import type { RuntimeDeps } from "@bulwark/server";

type NatsConnection = RuntimeDeps["nc"];

interface Entry<T> {
  readonly value: T;
  readonly expires: number;
}

/** What can tell, at once, that a tenant is suspended or closing (the tenant-status mirror). */
export interface TenantGateView {
  isBlocked(tenantId: string): boolean;
}

/** Options of `CachedTenancy`. */
export interface CachedTenancyOptions {
  /** Entry lifetime (CACHE_TTL_MS); 0 disables the cache. */
  readonly ttlMs: number;
  /** Suspension state that overrides a cached "active" answer. */
  readonly gate?: TenantGateView;
  readonly maxEntries?: number;
}

/**
 * Identity's copy of the two tenancy reads it makes on every sign-in —
 * ResolveTenant (slug to tenant) and GetSecurityPolicy — so a sign-in costs
 * no call to tenancy. It works as tenancy's own cache does: entries live
 * `ttlMs` at most and every tenancy event about a tenant (created, updated,
 * suspended, reactivated, closing, policy changed) evicts it, so a change
 * applies within one event delivery; a read that raced an eviction is not
 * stored. A suspension applies at once regardless: a cached "active" slug
 * is answered inactive as soon as the tenant-status mirror (the tenant gate
 * every service enforces) says the tenant is blocked.
 *
 * Only reads identity makes as itself (its service principal) are cached:
 * those are the ones tenancy answers the same for every caller.
 */
export class CachedTenancy {
  readonly #slugs = new Map<string, Entry<ResolveTenantResponse>>();
  readonly #policies = new Map<string, Entry<GetSecurityPolicyResponse>>();
  readonly #generation = new Map<string, number>();
  #epoch = 0;
  readonly #opts: Required<Omit<CachedTenancyOptions, "gate">> & { gate?: TenantGateView };
  /** The tenancy client to give identity's handlers: the two reads cached, everything else passed through. */
  readonly client: TenancyClient;

  constructor(upstream: TenancyClient, opts: CachedTenancyOptions) {
    this.#opts = { maxEntries: 10_000, ...opts };
    const resolveTenant: TenancyClient["resolveTenant"] = async (req, options) => {
      const slug = req.slug ?? "";
      const useCache = cacheable();
      let answer = useCache ? fresh(this.#slugs, slug) : undefined;
      if (answer === undefined) {
        const epoch = this.#epoch;
        answer = await upstream.resolveTenant(req, options);
        if (useCache && this.#opts.ttlMs > 0 && this.#epoch === epoch) this.#put(this.#slugs, slug, answer);
      }
      return answer.active && this.#opts.gate?.isBlocked(answer.tenantId) === true ? { ...answer, active: false } : answer;
    };
    const getSecurityPolicy: TenancyClient["getSecurityPolicy"] = async (req, options) => {
      const tenantId = req.tenantId ?? "";
      if (!cacheable()) return upstream.getSecurityPolicy(req, options);
      const cached = fresh(this.#policies, tenantId);
      if (cached !== undefined) return cached;
      const generation = this.#generation.get(tenantId) ?? 0;
      const answer = await upstream.getSecurityPolicy(req, options);
      if (this.#opts.ttlMs > 0 && (this.#generation.get(tenantId) ?? 0) === generation) this.#put(this.#policies, tenantId, answer);
      return answer;
    };
    this.client = new Proxy(upstream, {
      get(target, prop, receiver) {
        if (prop === "resolveTenant") return resolveTenant;
        if (prop === "getSecurityPolicy") return getSecurityPolicy;
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
  }

  /** Forgets everything about a tenant (a tenancy event named it). */
  evict(tenantId: string): void {
    this.#epoch++;
    this.#generation.set(tenantId, (this.#generation.get(tenantId) ?? 0) + 1);
    this.#policies.delete(tenantId);
    for (const [slug, e] of this.#slugs) if (e.value.tenantId === tenantId) this.#slugs.delete(slug);
    if (this.#generation.size > this.#opts.maxEntries * 2) this.#generation.clear();
  }

  /**
   * Evicts on every tenancy event about a tenant (`<prefix>.tenancy.tenant.>`,
   * a plain subscription as tenancy's own replicas use). An event that cannot
   * be read clears the whole cache rather than leave a stale entry.
   */
  watch(nc: NatsConnection, subjectPrefix: string): ReturnType<NatsConnection["subscribe"]> {
    return nc.subscribe(`${subjectPrefix}.tenancy.tenant.>`, {
      callback: (err, msg) => {
        if (err !== null) return;
        try {
          this.evict(fromBinary(EnvelopeSchema, msg.data).aggregateId);
        } catch {
          this.clear();
        }
      },
    });
  }

  /** Forgets everything (also when the event stream may have been missed: a reconnect). */
  clear(): void {
    this.#epoch++;
    this.#slugs.clear();
    this.#policies.clear();
  }

  #put<T>(map: Map<string, Entry<T>>, key: string, value: T): void {
    if (map.size >= this.#opts.maxEntries) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
    map.set(key, { value, expires: Date.now() + this.#opts.ttlMs });
  }
}

/** True when the call is identity acting as itself, whose answers do not depend on a caller. */
function cacheable(): boolean {
  const p = currentContext()?.principal;
  return p !== undefined && p.kind === "service" && p.id === "svc_identity";
}

function fresh<T>(map: Map<string, Entry<T>>, key: string): T | undefined {
  const e = map.get(key);
  if (e === undefined) return undefined;
  if (e.expires < Date.now()) {
    map.delete(key);
    return undefined;
  }
  return e.value;
}
