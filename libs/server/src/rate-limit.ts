import { isIP } from "node:net";

/** How a RateLimiter is set up. */
export interface RateLimiterOptions {
  /** Calls allowed per minute per key, refilled continuously; also the burst. */
  readonly perMinute: number;
  /** Keys remembered at most; the least recently seen is forgotten first. */
  readonly maxKeys?: number;
  /** The clock, in ms (tests pass their own). */
  readonly now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * An in-process token bucket per key (a client address and a method). Its
 * memory is bounded: buckets live in two generations of at most
 * `maxKeys / 2` each; when the young one fills, the old one is dropped and
 * the young one ages, and a bucket found in the old one moves back. So at
 * most `maxKeys` are remembered and the least recently used go first,
 * without reordering a map on every call. A caller cycling through random
 * addresses cannot grow it — forgetting a bucket only ever lets its key
 * start afresh. Each replica counts on its own: behind a load balancer
 * spreading one client over N replicas, that client gets up to N times the
 * limit.
 */
export class RateLimiter {
  readonly #capacity: number;
  readonly #perMs: number;
  readonly #generation: number;
  readonly #now: () => number;
  #young = new Map<string, Bucket>();
  #old = new Map<string, Bucket>();

  constructor(opts: RateLimiterOptions) {
    this.#capacity = opts.perMinute;
    this.#perMs = opts.perMinute / 60_000;
    this.#generation = Math.max(1, Math.floor((opts.maxKeys ?? 50_000) / 2));
    this.#now = opts.now ?? Date.now;
  }

  /** Takes one call's token: 0 if allowed, else the milliseconds until one is available. */
  take(key: string): number {
    const now = this.#now();
    let bucket = this.#young.get(key);
    if (bucket === undefined) {
      bucket = this.#old.get(key);
      if (bucket !== undefined) this.#old.delete(key);
      else bucket = { tokens: this.#capacity, at: now };
      if (this.#young.size >= this.#generation) {
        this.#old = this.#young;
        this.#young = new Map();
      }
      this.#young.set(key, bucket);
    }
    bucket.tokens = Math.min(this.#capacity, bucket.tokens + (now - bucket.at) * this.#perMs);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / this.#perMs);
  }

  /** How many keys are remembered (for tests). */
  get size(): number {
    return this.#young.size + this.#old.size;
  }
}

/**
 * The part of a client address that one client controls: the address itself
 * for IPv4, the /64 prefix for IPv6 (a single host is usually handed a whole
 * /64, so counting per address would let it count afresh at will).
 */
export function addressBucket(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  // Only IPv6 has colons: an IPv4 address is its own bucket, without parsing.
  if (!address.includes(":") || isIP(address) !== 6) return address;
  const zone = address.indexOf("%");
  const bare = zone >= 0 ? address.slice(0, zone) : address;
  const [head = "", tail] = bare.split("::") as [string, string | undefined];
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
