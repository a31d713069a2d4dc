import { createHmac, randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { SealedValueSchema, type EncryptionService, type SealedValue } from "@bulwark/contracts";
import { runAsService } from "@bulwark/core";
import type { Database } from "@bulwark/db";

/** The purposes audit encrypts under (bound as associated data by keys). */
export const purposes = { personal: "audit.personal", hashKey: "audit.hash_key", checkpointKey: "audit.checkpoint_key" } as const;

interface PendingSeal {
  readonly tenantId: string;
  readonly subjectId: string;
  readonly value: string;
  readonly resolve: (v: SealedValue | undefined) => void;
  readonly reject: (err: unknown) => void;
}

const unavailableCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Canceled, Code.ResourceExhausted]);

/** The one answer when keys cannot be reached. */
export function keysUnavailable(cause?: unknown): ConnectError {
  return new ConnectError("the keys service is unavailable; retry", Code.Unavailable, undefined, undefined, cause);
}

/**
 * How audit keeps values it must not keep plainly, all through the keys
 * service: personal data encrypted under the data subject's key (so
 * erasure, destroying that key, leaves the entry and its hash intact and
 * the person unreadable); sensitive values as an HMAC-SHA256 under a
 * per-tenant key (random, sealed under the tenant's ring in `hash_keys`),
 * so equal values correlate without being revealed; and audit's own
 * checkpoint signing key, sealed under audit's service ring.
 */
export class Privacy {
  readonly #keys: Pick<Client<typeof EncryptionService>, "encrypt" | "decrypt" | "encryptBatch">;
  readonly #db: Database;
  readonly #hashKeys = new LRUCache<string, Buffer>({ max: 10_000, ttl: 3_600_000 });
  readonly #hashKeysLoading = new Map<string, Promise<Buffer>>();
  #pending: PendingSeal[] = [];

  constructor(keys: Pick<Client<typeof EncryptionService>, "encrypt" | "decrypt" | "encryptBatch">, db: Database) {
    this.#keys = keys;
    this.#db = db;
  }

  /**
   * Encrypts personal data of `subjectId` (a user id) in `tenantId`;
   * undefined when it cannot be (the subject's key was destroyed: an erased
   * person's data is not kept). Seals asked for in the same tick go to keys
   * in one EncryptBatch call per tenant.
   */
  seal(tenantId: string, subjectId: string, value: string): Promise<SealedValue | undefined> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ tenantId, subjectId, value, resolve, reject });
      if (this.#pending.length === 1) setImmediate(() => void this.#flushSeals());
    });
  }

  async #flushSeals(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    const byTenant = new Map<string, PendingSeal[]>();
    for (const p of pending) {
      const list = byTenant.get(p.tenantId);
      if (list === undefined) byTenant.set(p.tenantId, [p]);
      else list.push(p);
    }
    // The tenants' calls at once; each tenant's chunks in order.
    await Promise.all([...byTenant].map(([tenantId, items]) => this.#sealAll(tenantId, items)));
  }

  async #sealAll(tenantId: string, items: readonly PendingSeal[]): Promise<void> {
    for (let i = 0; i < items.length; i += 100) {
      const chunk = items.slice(i, i + 100);
      try {
        const { results } = await this.#call(tenantId, () =>
          this.#keys.encryptBatch({ items: chunk.map((c) => ({ plaintext: Buffer.from(c.value, "utf8"), purpose: purposes.personal, subjectId: c.subjectId })) }),
        );
        chunk.forEach((c, j) => {
          const r = results[j]?.result;
          c.resolve(r === undefined || r.ciphertext.length === 0 ? undefined : create(SealedValueSchema, { subjectId: c.subjectId, ciphertext: r.ciphertext }));
        });
      } catch (err) {
        for (const c of chunk) c.reject(err);
      }
    }
  }

  /** Decrypts a sealed value, or undefined when its subject's key was destroyed (or it does not decrypt). */
  async open(tenantId: string, sealed: SealedValue): Promise<string | undefined> {
    try {
      const { plaintext } = await runAsService("audit", tenantId, () => this.#keys.decrypt({ ciphertext: sealed.ciphertext, purpose: purposes.personal }));
      return Buffer.from(plaintext).toString("utf8");
    } catch (err) {
      const ce = ConnectError.from(err);
      if (unavailableCodes.has(ce.code)) throw keysUnavailable(err);
      return undefined;
    }
  }

  /** `hmac-sha256:<base64url>` of a sensitive value under the tenant's hash key. */
  async keyedHash(tenantId: string, value: string): Promise<string> {
    const key = await this.#hashKey(tenantId);
    return `hmac-sha256:${createHmac("sha256", key).update(value, "utf8").digest("base64url")}`;
  }

  /** Seals audit's checkpoint key under audit's own service ring. */
  async sealServiceSecret(id: string, secret: Uint8Array): Promise<Buffer> {
    const { ciphertext } = await this.#call(undefined, () => this.#keys.encrypt({ plaintext: secret, purpose: purposes.checkpointKey, context: { key_id: id }, serviceRing: true }));
    return Buffer.from(ciphertext);
  }

  /** Opens what sealServiceSecret sealed. */
  async openServiceSecret(id: string, sealed: Uint8Array): Promise<Buffer> {
    const { plaintext } = await this.#call(undefined, () => this.#keys.decrypt({ ciphertext: sealed, purpose: purposes.checkpointKey, context: { key_id: id } }));
    return Buffer.from(plaintext);
  }

  /**
   * The tenant's hash key: cached, and loaded once however many values ask
   * at once (a batch of a tenant's events all ask together when it is not
   * cached yet, and would otherwise each read it and ask keys to open it).
   */
  #hashKey(tenantId: string): Promise<Buffer> {
    const hit = this.#hashKeys.get(tenantId);
    if (hit !== undefined) return Promise.resolve(hit);
    let loading = this.#hashKeysLoading.get(tenantId);
    if (loading === undefined) {
      loading = this.#loadHashKey(tenantId).finally(() => this.#hashKeysLoading.delete(tenantId));
      this.#hashKeysLoading.set(tenantId, loading);
    }
    return loading;
  }

  async #loadHashKey(tenantId: string): Promise<Buffer> {
    const read = (): Promise<{ sealed: Buffer }[]> => this.#db.transaction((em) => em.execute<{ sealed: Buffer }[]>("select sealed from hash_keys where tenant_id = ?", [tenantId]));
    let [row] = await runAsService("audit", tenantId, read);
    if (row === undefined) {
      const { ciphertext } = await this.#call(tenantId, () => this.#keys.encrypt({ plaintext: randomBytes(32), purpose: purposes.hashKey, context: { tenant_id: tenantId } }));
      await runAsService("audit", tenantId, () =>
        this.#db.transaction((em) => em.execute("insert into hash_keys (tenant_id, sealed, created_at) values (?, ?, now()) on conflict do nothing", [tenantId, Buffer.from(ciphertext)])),
      );
      [row] = await runAsService("audit", tenantId, read);
    }
    if (row === undefined) throw new Error("a tenant's hash key could not be stored");
    const { plaintext } = await this.#call(tenantId, () => this.#keys.decrypt({ ciphertext: row.sealed, purpose: purposes.hashKey, context: { tenant_id: tenantId } }));
    const key = Buffer.from(plaintext);
    this.#hashKeys.set(tenantId, key);
    return key;
  }

  async #call<T>(tenantId: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await runAsService("audit", tenantId, fn);
    } catch (err) {
      const ce = ConnectError.from(err);
      if (unavailableCodes.has(ce.code)) throw keysUnavailable(err);
      throw new ConnectError("a value could not be encrypted or decrypted through keys", Code.Internal, undefined, undefined, err);
    }
  }
}
