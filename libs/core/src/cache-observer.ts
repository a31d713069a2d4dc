/**
 * Told of every lookup in a read cache (the tenant cache, the access-token
 * verifier, the API-key cache), so the runtime can export hit rates without
 * the caches knowing about metrics. `cache` names the cache and is a metric
 * label: keep it a short constant, never a key.
 */
export interface CacheObserver {
  lookup(cache: string, hit: boolean): void;
}
