import { createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { LRUCache } from "lru-cache";
import { KeyRingDestroyedSchema, KeyRingMinimumVersionChangedSchema, KeyRingRotatedSchema } from "@bulwark/contracts";
import { invalidArgument, newId, notFound, runAsPlatform, runInTenant, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import type { KeyProvider } from "../master/index.js";
import { keyDestroyed } from "./errors.js";

/** Whose data a ring protects. */
export type RingKind = "tenant" | "subject" | "service";

/**
 * Which ring: the tenant's, one data subject's in a tenant, or a Bulwark
 * service's own (`subjectId` is then the service's name, `tenantId` null).
 */
export interface RingScope {
  readonly kind: RingKind;
  readonly tenantId: string | null;
  readonly subjectId: string | null;
}

/** A ring's state as every encryption and decryption checks it. */
export interface RingMeta {
  readonly id: string;
  readonly kind: RingKind;
  readonly tenantId: string | null;
  readonly subjectId: string | null;
  readonly currentVersion: number;
  readonly minDecryptVersion: number;
  readonly destroyed: boolean;
  readonly createdAt: Date;
  readonly rotatedAt: Date;
  readonly destroyedAt: Date | null;
}

/** A ring version as GetKeyRing shows it. */
export interface VersionRow {
  version: number;
  master_key_id: string | null;
  created_at: Date;
  destroyed_at: Date | null;
}

interface RingRow {
  id: string;
  tenant_id: string | null;
  kind: RingKind;
  subject_id: string | null;
  current_version: number;
  min_decrypt_version: number;
  state: "enabled" | "destroyed";
  created_at: Date;
  rotated_at: Date;
  destroyed_at: Date | null;
}

const ringColumns = "id, tenant_id, kind, subject_id, current_version, min_decrypt_version, state, created_at, rotated_at, destroyed_at";

function toMeta(r: RingRow): RingMeta {
  return {
    id: r.id,
    kind: r.kind,
    tenantId: r.tenant_id,
    subjectId: r.subject_id,
    currentVersion: r.current_version,
    minDecryptVersion: r.min_decrypt_version,
    destroyed: r.state === "destroyed",
    createdAt: new Date(r.created_at),
    rotatedAt: new Date(r.rotated_at),
    destroyedAt: r.destroyed_at === null ? null : new Date(r.destroyed_at),
  };
}

/** The unique scope key of a ring: `kind:tenant:subject`. */
export function scopeKey(s: RingScope): string {
  return `${s.kind}:${s.tenantId ?? ""}:${s.subjectId ?? ""}`;
}

/** What a data key's wrapping is bound to: its ring and version. */
export function wrapBinding(ringId: string, version: number): Buffer {
  return Buffer.from(`${ringId}\0${version}`, "utf8");
}

/** Runs `fn` in the database scope of a ring: its tenant, or the platform scope for a service's ring. */
export function inRingScope<T>(scope: { kind: RingKind; tenantId: string | null; subjectId: string | null }, fn: () => Promise<T>): Promise<T> {
  if (scope.kind === "service" || scope.tenantId === null) return runAsPlatform(`the ${scope.subjectId ?? "?"} service's own key ring`, fn);
  return runInTenant(scope.tenantId, fn);
}

/** How to build KeyRings. */
export interface KeyRingsOptions {
  readonly db: Database;
  readonly provider: KeyProvider;
  readonly events: EventPublisher;
  readonly logger: Logger;
  /** Most unwrapped data keys held in memory (KEYS_CACHE_MAX_KEYS). */
  readonly maxKeys: number;
  /** How long a replica trusts its cached ring state (destroy, rotation, minimum version). */
  readonly ringTtlMs?: number;
  readonly afterCommit?: () => void;
  readonly now?: () => Date;
}

/**
 * The key rings of the mesh and their data keys. Ring state is cached for
 * a second (ringTtlMs), so every replica sees a rotation, a new minimum
 * version or a destroyed ring within a second without a query per call;
 * unwrapped data keys are cached in a bounded LRU (KEYS_CACHE_MAX_KEYS),
 * in memory only, and dropped when their ring is destroyed.
 */
export class KeyRings {
  readonly #o: KeyRingsOptions;
  readonly #rings: LRUCache<string, RingMeta>;
  readonly #keys: LRUCache<string, KeyObject>;
  readonly #loading = new Map<string, Promise<KeyObject>>();

  constructor(options: KeyRingsOptions) {
    this.#o = options;
    this.#rings = new LRUCache({ max: 100_000, ttl: options.ringTtlMs ?? 1_000 });
    this.#keys = new LRUCache({ max: options.maxKeys, ttl: 3_600_000 });
  }

  #now(): Date {
    return this.#o.now?.() ?? new Date();
  }

  /**
   * The ring of a scope, created with its first version on first use when
   * `create` (a destroyed ring is returned as it is: callers refuse it).
   */
  async ringFor(scope: RingScope, create: boolean): Promise<RingMeta | undefined> {
    const key = `s:${scopeKey(scope)}`;
    const cached = this.#rings.get(key);
    if (cached !== undefined) return cached;
    const meta = await inRingScope(scope, () =>
      this.#o.db.transaction(async (em) => {
        const found = await this.#selectByScope(em, scope, false);
        if (found !== undefined || !create) return found;
        return this.#create(em, scope);
      }),
    );
    if (meta !== undefined) this.#remember(meta);
    return meta;
  }

  /**
   * A ring by its key id, as seen by a caller of `tenantId` (or the service
   * `service` acting as itself): undefined when it does not exist or is not
   * the caller's.
   */
  async ringById(id: string, caller: { tenantId: string | undefined; service: string | undefined }): Promise<RingMeta | undefined> {
    let meta = this.#rings.get(`i:${id}`);
    if (meta === undefined) {
      const load = (): Promise<RingMeta | undefined> => this.#o.db.transaction(async (em) => (await em.execute<RingRow[]>(`select ${ringColumns} from key_rings where id = ?`, [id])).map(toMeta)[0]);
      if (caller.tenantId !== undefined) meta = await runInTenant(caller.tenantId, load);
      if (meta === undefined && caller.service !== undefined) meta = await runAsPlatform(`the ${caller.service} service's own key ring`, load);
      if (meta !== undefined) this.#remember(meta);
    }
    if (meta === undefined) return undefined;
    const mine = meta.kind === "service" ? meta.subjectId === caller.service && caller.service !== undefined : meta.tenantId === caller.tenantId && caller.tenantId !== undefined;
    return mine ? meta : undefined;
  }

  /** The data key of one version of a ring, unwrapped (cached). */
  async keyOf(ring: RingMeta, version: number): Promise<KeyObject> {
    const k = `${ring.id}:${version}`;
    const cached = this.#keys.get(k);
    if (cached !== undefined) return cached;
    let pending = this.#loading.get(k);
    if (pending === undefined) {
      pending = this.#loadKey(ring, version).finally(() => this.#loading.delete(k));
      this.#loading.set(k, pending);
    }
    return pending;
  }

  async #loadKey(ring: RingMeta, version: number): Promise<KeyObject> {
    const rows = await inRingScope(ring, () =>
      this.#o.db.transaction((em) => em.execute<{ wrapped_key: Buffer | null; master_key_id: string | null }[]>("select wrapped_key, master_key_id from key_versions where ring_id = ? and version = ?", [ring.id, version])),
    );
    const row = rows[0];
    if (row === undefined) throw invalidArgument("ciphertext", "ciphertext does not decrypt with this tenant, purpose and context");
    if (row.wrapped_key === null || row.master_key_id === null) {
      this.forget(ring.id);
      throw keyDestroyed();
    }
    const raw = await this.#o.provider.unwrap(row.master_key_id, row.wrapped_key, wrapBinding(ring.id, version));
    const key = createSecretKey(raw);
    raw.fill(0);
    this.#keys.set(`${ring.id}:${version}`, key);
    return key;
  }

  /** Forgets everything cached about a ring (its state and its keys). */
  forget(ringId: string): void {
    const meta = this.#rings.get(`i:${ringId}`);
    this.#rings.delete(`i:${ringId}`);
    if (meta !== undefined) this.#rings.delete(`s:${scopeKey(meta)}`);
    for (const k of [...this.#keys.keys()]) if (k.startsWith(`${ringId}:`)) this.#keys.delete(k);
  }

  #remember(meta: RingMeta): void {
    this.#rings.set(`i:${meta.id}`, meta);
    this.#rings.set(`s:${scopeKey(meta)}`, meta);
  }

  async #selectByScope(em: EntityManager, scope: RingScope, lock: boolean): Promise<RingMeta | undefined> {
    const rows = await em.execute<RingRow[]>(`select ${ringColumns} from key_rings where scope = ?${lock ? " for update" : ""}`, [scopeKey(scope)]);
    return rows.map(toMeta)[0];
  }

  async #create(em: EntityManager, scope: RingScope): Promise<RingMeta> {
    const id = newId("kr");
    const now = this.#now();
    const inserted = await em.execute<{ id: string }[]>(
      `insert into key_rings (id, tenant_id, kind, subject_id, scope, current_version, min_decrypt_version, state, created_at, rotated_at)
       values (?, ?, ?, ?, ?, 1, 1, 'enabled', ?, ?) on conflict (scope) do nothing returning id`,
      [id, scope.tenantId, scope.kind, scope.subjectId, scopeKey(scope), now, now],
    );
    if (inserted.length === 0) return (await this.#selectByScope(em, scope, false))!;
    await this.#insertVersion(em, id, scope.tenantId, 1, now);
    return (await this.#selectByScope(em, scope, false))!;
  }

  async #insertVersion(em: EntityManager, ringId: string, tenantId: string | null, version: number, now: Date): Promise<void> {
    const dataKey = randomBytes(32);
    const { masterKeyId, wrapped } = await this.#o.provider.wrap(dataKey, wrapBinding(ringId, version));
    dataKey.fill(0);
    await em.execute("insert into key_versions (ring_id, version, tenant_id, wrapped_key, master_key_id, created_at) values (?, ?, ?, ?, ?, ?)", [ringId, version, tenantId, wrapped, masterKeyId, now]);
  }

  /** Every version of a ring, oldest first, as stored (never key material). */
  async versionsOf(ring: RingMeta): Promise<VersionRow[]> {
    return inRingScope(ring, () => this.#o.db.transaction((em) => em.execute<VersionRow[]>("select version, master_key_id, created_at, destroyed_at from key_versions where ring_id = ? order by version", [ring.id])));
  }

  /** Re-reads a ring (bypassing the cache). */
  async fresh(ring: RingMeta): Promise<RingMeta> {
    const rows = await inRingScope(ring, () => this.#o.db.transaction((em) => em.execute<RingRow[]>(`select ${ringColumns} from key_rings where id = ?`, [ring.id])));
    const meta = rows.map(toMeta)[0];
    if (meta === undefined) throw notFound("key ring");
    this.#remember(meta);
    return meta;
  }

  /**
   * Makes a new version current inside `em`'s transaction (the ring's scope
   * must be in force) and records bulwark.keys.key_ring.rotated.
   */
  async rotateIn(em: EntityManager, ringId: string, automatic: boolean): Promise<RingMeta> {
    const rows = await em.execute<RingRow[]>(`select ${ringColumns} from key_rings where id = ? for update`, [ringId]);
    const ring = rows.map(toMeta)[0];
    if (ring === undefined) throw notFound("key ring");
    if (ring.destroyed) throw keyDestroyed();
    const version = ring.currentVersion + 1;
    const now = this.#now();
    await this.#insertVersion(em, ring.id, ring.tenantId, version, now);
    await em.execute("update key_rings set current_version = ?, rotated_at = ? where id = ?", [version, now, ring.id]);
    await this.#o.events.publish(em, { aggregate: "key_ring", verb: "rotated", aggregateId: ring.id, schema: KeyRingRotatedSchema, payload: { $typeName: "bulwark.events.v1.KeyRingRotated", keyId: ring.id, kind: ring.kind, subjectId: ring.subjectId ?? "", version, automatic } });
    return { ...ring, currentVersion: version, rotatedAt: now };
  }

  /** RotateKey: a new current version now. */
  async rotate(ring: RingMeta): Promise<RingMeta> {
    const meta = await inRingScope(ring, () => this.#o.db.transaction((em) => this.rotateIn(em, ring.id, false)));
    this.forget(ring.id);
    this.#remember(meta);
    this.#o.afterCommit?.();
    return meta;
  }

  /** Sets the minimum decryption version (1 to the current version). */
  async setMinimum(ring: RingMeta, version: number): Promise<RingMeta> {
    const meta = await inRingScope(ring, () =>
      this.#o.db.transaction(async (em) => {
        const r = (await em.execute<RingRow[]>(`select ${ringColumns} from key_rings where id = ? for update`, [ring.id])).map(toMeta)[0];
        if (r === undefined) throw notFound("key ring");
        if (r.destroyed) throw keyDestroyed();
        if (version > r.currentVersion) throw invalidArgument("version", `must be at most the current version ${r.currentVersion}`);
        if (version === r.minDecryptVersion) return r;
        await em.execute("update key_rings set min_decrypt_version = ? where id = ?", [version, r.id]);
        await this.#o.events.publish(em, { aggregate: "key_ring", verb: "minimum_version_changed", aggregateId: r.id, schema: KeyRingMinimumVersionChangedSchema, payload: { $typeName: "bulwark.events.v1.KeyRingMinimumVersionChanged", keyId: r.id, minimumDecryptionVersion: version } });
        return { ...r, minDecryptVersion: version };
      }),
    );
    this.forget(ring.id);
    this.#remember(meta);
    this.#o.afterCommit?.();
    return meta;
  }

  /**
   * Crypto-shreds a ring: every version's wrapped key is deleted, the ring
   * stays as a tombstone. `scope` creates the tombstone when the ring does
   * not exist (a data subject that never had one). Returns the ring and
   * whether this call destroyed it.
   */
  async destroy(target: { ringId: string } | { scope: RingScope }, reason: string): Promise<{ ring: RingMeta; destroyedNow: boolean }> {
    const scope = "scope" in target ? target.scope : undefined;
    const out = await (scope !== undefined ? (fn: () => Promise<{ ring: RingMeta; destroyedNow: boolean }>) => inRingScope(scope, fn) : (fn: () => Promise<{ ring: RingMeta; destroyedNow: boolean }>) => fn())(() =>
      this.#o.db.transaction(async (em) => {
        let r: RingMeta | undefined;
        if ("ringId" in target) r = (await em.execute<RingRow[]>(`select ${ringColumns} from key_rings where id = ? for update`, [target.ringId])).map(toMeta)[0];
        else {
          r = await this.#selectByScope(em, target.scope, true);
          if (r === undefined) {
            const now = this.#now();
            await em.execute(
              `insert into key_rings (id, tenant_id, kind, subject_id, scope, current_version, min_decrypt_version, state, destroy_reason, created_at, rotated_at, destroyed_at)
               values (?, ?, ?, ?, ?, 0, 1, 'enabled', '', ?, ?, null) on conflict (scope) do nothing`,
              [newId("kr"), target.scope.tenantId, target.scope.kind, target.scope.subjectId, scopeKey(target.scope), now, now],
            );
            r = await this.#selectByScope(em, target.scope, true);
          }
        }
        if (r === undefined) throw notFound("key ring");
        if (r.destroyed) return { ring: r, destroyedNow: false };
        const now = this.#now();
        await em.execute("update key_versions set wrapped_key = null, master_key_id = null, destroyed_at = ? where ring_id = ? and wrapped_key is not null", [now, r.id]);
        await em.execute("update key_rings set state = 'destroyed', destroyed_at = ?, destroy_reason = ? where id = ?", [now, reason, r.id]);
        await this.#o.events.publish(em, { aggregate: "key_ring", verb: "destroyed", aggregateId: r.id, schema: KeyRingDestroyedSchema, payload: { $typeName: "bulwark.events.v1.KeyRingDestroyed", keyId: r.id, kind: r.kind, subjectId: r.subjectId ?? "", reason } });
        return { ring: { ...r, destroyed: true, destroyedAt: now }, destroyedNow: true };
      }),
    );
    this.forget(out.ring.id);
    this.#remember(out.ring);
    if (out.destroyedNow) this.#o.afterCommit?.();
    return out;
  }

  /** Refuses a destroyed ring with FAILED_PRECONDITION "key destroyed". */
  static usable(ring: RingMeta): RingMeta {
    if (ring.destroyed) throw keyDestroyed();
    return ring;
  }
}
