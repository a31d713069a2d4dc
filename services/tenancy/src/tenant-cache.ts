import type { SecurityPolicy, Tenant } from "@bulwark/contracts";
import type { CacheObserver } from "@bulwark/core";

interface Entry<T> {
  readonly value: T;
  readonly expires: number;
}

/**
 * A read-through cache of tenants and their policies, the mesh's hottest
 * reads (every service asks for a tenant's policy on sign-in, token issue
 * and API-key checks). Entries live `ttlMs` at most and are evicted at once
 * by this replica's own commits and by every tenancy event seen on NATS, so
 * other replicas' changes apply within one event delivery. A read that raced
 * a change is not stored: each id carries a generation that an eviction
 * bumps, and a value read under an older generation is dropped.
 *
 * A TTL of 0 disables it (CACHE_TTL_MS=0).
 *
 * The cache bypasses row-level security, so callers must check visibility
 * first (`TenancyServiceImpl` answers NOT_FOUND for another tenant's id
 * exactly as the database would).
 */
export class TenantCache {
  readonly #tenants = new Map<string, Entry<Tenant>>();
  readonly #policies = new Map<string, Entry<SecurityPolicy>>();
  readonly #slugs = new Map<string, Entry<{ tenantId: string; active: boolean }>>();
  readonly #generation = new Map<string, number>();
  #epoch = 0;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #observer: CacheObserver | undefined;

  /** `observer` is told of every lookup (`tenant`, `policy`, `slug`), for hit-rate metrics. */
  constructor(ttlMs = 5_000, maxEntries = 10_000, observer?: CacheObserver) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#observer = observer;
  }

  /** The generation to pass back to `put*` for a read that starts now. */
  generation(tenantId: string): number {
    return this.#generation.get(tenantId) ?? 0;
  }

  tenant(id: string): Tenant | undefined {
    return this.#seen("tenant", fresh(this.#tenants, id));
  }

  policy(id: string): SecurityPolicy | undefined {
    return this.#seen("policy", fresh(this.#policies, id));
  }

  slug(slug: string): { tenantId: string; active: boolean } | undefined {
    return this.#seen("slug", fresh(this.#slugs, slug));
  }

  #seen<T>(cache: string, value: T | undefined): T | undefined {
    // A disabled cache (TTL 0) is not a cache whose hit rate means anything.
    if (this.#ttlMs > 0) this.#observer?.lookup(cache, value !== undefined);
    return value;
  }

  putTenant(t: Tenant, generation: number): void {
    if (this.#ttlMs === 0 || this.generation(t.id) !== generation) return;
    this.#put(this.#tenants, t.id, t);
    this.#put(this.#slugs, t.slug, { tenantId: t.id, active: t.state === 1 });
  }

  putPolicy(p: SecurityPolicy, generation: number): void {
    if (this.#ttlMs > 0 && this.generation(p.tenantId) === generation) this.#put(this.#policies, p.tenantId, p);
  }

  /** A counter bumped by every eviction, for reads that start without an id. */
  epoch(): number {
    return this.#epoch;
  }

  putSlug(slug: string, value: { tenantId: string; active: boolean }, epoch: number): void {
    if (this.#ttlMs > 0 && this.#epoch === epoch) this.#put(this.#slugs, slug, value);
  }

  /** Forgets everything about a tenant (after a change, here or elsewhere). */
  evict(tenantId: string): void {
    this.#epoch++;
    this.#generation.set(tenantId, this.generation(tenantId) + 1);
    const t = this.#tenants.get(tenantId)?.value;
    if (t !== undefined) this.#slugs.delete(t.slug);
    for (const [slug, e] of this.#slugs) if (e.value.tenantId === tenantId) this.#slugs.delete(slug);
    this.#tenants.delete(tenantId);
    this.#policies.delete(tenantId);
    if (this.#generation.size > this.#maxEntries * 2) this.#generation.clear();
  }

  #put<T>(map: Map<string, Entry<T>>, key: string, value: T): void {
    if (map.size >= this.#maxEntries) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
    map.set(key, { value, expires: Date.now() + this.#ttlMs });
  }
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
