import { createHmac, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseApiKey, runAsPlatform, unauthenticated, type Principal } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import type { OwnerPermissions } from "./owners.js";
import type { RateLimiter, UsageCaps, UsageRecorder } from "./limits.js";
import { endOf, type ApiKeyRow, queryRows } from "./rows.js";

/** HMAC-SHA256 of a key's secret under the service's pepper: all that is stored of it. */
export function secretHash(pepper: string, secret: string): Buffer {
  return createHmac("sha256", pepper).update(secret, "ascii").digest();
}

/** Who a verified key stands for. */
export interface VerifiedKey {
  readonly row: ApiKeyRow;
  /** Effective permissions, sorted: granted ∩ the owner's current ones. */
  readonly permissions: string[];
  readonly ownerEpoch: number;
  /** Uses left under the cap, if capped. */
  readonly remaining?: bigint;
  /** True when the key has a rate limit or a cap (a verifier must not cache it). */
  readonly limited: boolean;
}

/** What the tenant gate says about a tenant (the runtime's TenantStatusCache). */
export interface TenantGateView {
  readonly ready: boolean;
  isBlocked(tenantId: string): boolean;
}

/** What a verifier is built from. */
export interface ApiKeyVerifierOptions {
  readonly db: Database;
  readonly pepper: string;
  readonly owners: OwnerPermissions;
  readonly caps: UsageCaps;
  readonly rates: RateLimiter;
  readonly usage: UsageRecorder;
  readonly tenants: TenantGateView;
}

/** How long a key's row is remembered without an event saying it changed. */
const rowTtlMs = 30_000;
/** How long an unknown key id is remembered (a flood of made-up ids costs one read each per second). */
const unknownTtlMs = 1_000;
const maxRows = 50_000;

/** The one refusal of a key that is not valid now, whatever the reason. */
export const invalidKey = (): ConnectError => unauthenticated("the API key is not valid");

/**
 * Verifies presented API keys inside keys: checksum, the stored row (cached
 * by key id, dropped on every key event from any replica and after 30 s),
 * the secret's HMAC compared in constant time, revocation, expiry and the
 * end of a rotation's overlap, the tenant gate, the owner's current
 * permissions (identity, cached until it announces a change) and the
 * key's limits. Writes nothing to Postgres; usage is batched.
 */
export class ApiKeyVerifier {
  readonly #o: ApiKeyVerifierOptions;
  readonly #rows = new Map<string, { row: ApiKeyRow | undefined; at: number }>();
  #generation = 0;

  constructor(options: ApiKeyVerifierOptions) {
    this.#o = options;
  }

  /**
   * The key's principal data; UNAUTHENTICATED for anything but a valid key
   * (of `tenantId`, when the caller is a tenant's principal),
   * RESOURCE_EXHAUSTED for a limit, UNAVAILABLE when identity cannot tell
   * the owner's permissions.
   */
  async verify(token: string, opts: { refreshPermissions?: boolean; tenantId?: string | undefined } = {}): Promise<VerifiedKey> {
    const parsed = parseApiKey(token);
    if (parsed === undefined) throw invalidKey();
    const row = await this.#row(parsed.id);
    // The hash is compared even for an unknown id, so timing tells nothing about which ids exist.
    const expected = row?.secret_hash ?? dummyHash;
    const ok = timingSafeEqual(secretHash(this.#o.pepper, parsed.secret), expected);
    if (!ok || row === undefined || row.environment !== parsed.environment) throw invalidKey();
    if (row.state !== "active" || endOf(row) <= new Date()) throw invalidKey();
    if (opts.tenantId !== undefined && opts.tenantId !== row.tenant_id) throw invalidKey();
    if (!this.#o.tenants.ready) throw new ConnectError("the tenant gate is loading; retry", Code.Unavailable);
    if (this.#o.tenants.isBlocked(row.tenant_id)) throw invalidKey();
    const owner = await this.#o.owners.of(row.tenant_id, row.owner_id, opts.refreshPermissions === true);
    if (!owner.active) throw invalidKey();
    const permissions = row.granted.filter((p) => owner.permissions.has(p));
    let remaining: bigint | undefined;
    if (row.rate_limit !== null && row.rate_window_ms !== null && !this.#o.rates.allow(row.cap_id, row.rate_limit, row.rate_window_ms)) {
      throw new ConnectError("the API key's rate limit is exceeded; retry later", Code.ResourceExhausted);
    }
    if (row.usage_limit !== null) {
      remaining = await this.#o.caps.take(row.cap_id, () => this.#capFallback(row.cap_id));
      if (remaining === undefined) throw new ConnectError("the API key's usage limit is used up", Code.ResourceExhausted);
    }
    this.#o.usage.record(row.id);
    const limited = row.rate_limit !== null || row.usage_limit !== null;
    return { row, permissions, ownerEpoch: owner.epoch, limited, ...(remaining !== undefined ? { remaining } : {}) };
  }

  /** The principal of a verified key, as a resolver hands it to the pipeline. */
  static principalOf(v: VerifiedKey): Principal {
    return { id: v.row.id, kind: "api_key", tenantId: v.row.tenant_id, permissions: new Set(v.permissions) };
  }

  /** Forgets what is cached about a key (any change to it). */
  forgetKey(keyId: string): void {
    this.#generation++;
    this.#rows.delete(keyId);
  }

  async #row(id: string): Promise<ApiKeyRow | undefined> {
    const hit = this.#rows.get(id);
    const now = Date.now();
    if (hit !== undefined && now - hit.at < (hit.row === undefined ? unknownTtlMs : rowTtlMs)) return hit.row;
    const generation = this.#generation;
    const rows = await runAsPlatform("verify an API key (its tenant is not known before)", () =>
      this.#o.db.transaction((em) => queryRows(em, "select * from api_keys where id = ?", [id])),
    );
    const row = rows[0];
    if (generation === this.#generation) {
      if (this.#rows.size >= maxRows) {
        const oldest = this.#rows.keys().next().value;
        if (oldest !== undefined) this.#rows.delete(oldest);
      }
      this.#rows.set(id, { row, at: now });
    }
    return row;
  }

  /** Uses left under a cap from Postgres, if its counter is lost: the limit less the batched count. */
  async #capFallback(capId: string): Promise<bigint> {
    const r = await runAsPlatform("rebuild a lost API key usage counter", () =>
      this.#o.db.transaction((em) => em.execute<{ left: string | null }[]>("select max(usage_limit) - sum(usage_count) as left from api_keys where cap_id = ?", [capId])),
    );
    return BigInt(r[0]?.left ?? 0);
  }
}

/** What an unknown id's secret is compared against (never matches: HMAC output is never all zeros in practice). */
const dummyHash = Buffer.alloc(32);
