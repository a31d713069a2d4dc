import { describeError, runAsPlatform, runAsService, type Logger } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { Privacy } from "../privacy/privacy.js";
import { randomBytes } from "node:crypto";
import { ed25519Signer, signCheckpoint } from "@bulwark/tlog";
import type { TreeStore } from "./store.js";

/** How Checkpoints is built. */
export interface CheckpointsOptions {
  readonly db: Database;
  readonly tree: TreeStore;
  readonly privacy: Privacy;
  /** The first part of every origin. */
  readonly logName: string;
  readonly logger: Logger;
}

/** A signed tree head as stored. */
export interface StoredCheckpoint {
  readonly size: number;
  readonly root: Buffer;
  readonly note: string;
}

const signingKeyId = "ask_1";

/**
 * Each tenant's signed tree heads. Signing takes the tenant's tree lock,
 * so the size and root signed are those of a tree no replica is appending
 * to; a checkpoint is inserted once per (tenant, size) — a size is never
 * signed with another root — and only for a non-empty tree, so no size-0
 * checkpoint ever follows a non-empty one. The Ed25519 key is one for the
 * whole service, created on first use and kept sealed under audit's
 * service ring in the keys service (`signing_keys`); each tenant's log has
 * its own key name (its origin) and so its own verifier key.
 */
export class Checkpoints {
  readonly #o: CheckpointsOptions;
  #seed: Promise<Uint8Array> | undefined;

  constructor(options: CheckpointsOptions) {
    this.#o = options;
  }

  /** `<log name>/audit/<tenant id>`: the checkpoint origin and the note key name. */
  origin(tenantId: string): string {
    return `${this.#o.logName}/audit/${tenantId}`;
  }

  /** The tenant log's note verifier key. */
  async verifierKey(tenantId: string): Promise<string> {
    return ed25519Signer(this.origin(tenantId), await this.seed()).verifierKey;
  }

  /** The latest checkpoint of the tenant (in its scope), if any. */
  async latest(em: EntityManager, tenantId: string): Promise<StoredCheckpoint | undefined> {
    const [row] = await em.execute<{ size: string; root_hash: Buffer; note: string }[]>("select size, root_hash, note from checkpoints where tenant_id = ? order by size desc limit 1", [tenantId]);
    return row === undefined ? undefined : { size: Number(row.size), root: row.root_hash, note: row.note };
  }

  /** Signs the tenant's tree now if it grew since its latest checkpoint; returns the latest checkpoint (undefined for an empty tree). */
  async sign(tenantId: string): Promise<StoredCheckpoint | undefined> {
    const signer = ed25519Signer(this.origin(tenantId), await this.seed());
    return runAsService("audit", tenantId, () =>
      this.#o.db.transaction(async (em) => {
        await this.#o.tree.lock(em, tenantId);
        const last = await this.latest(em, tenantId);
        const size = await this.#o.tree.size(em, tenantId);
        if (size === 0 || (last !== undefined && last.size >= size)) return last;
        const root = Buffer.from(await this.#o.tree.root(em, tenantId, size));
        const note = await signCheckpoint({ origin: this.origin(tenantId), size, rootHash: root }, signer);
        await em.execute("insert into checkpoints (tenant_id, size, root_hash, note, signed_at) values (?, ?, ?, ?, now()) on conflict do nothing", [tenantId, size, root, note]);
        return (await this.latest(em, tenantId))!;
      }),
    );
  }

  /** Signs every tenant whose tree grew since its latest checkpoint (the periodic job). */
  async signGrown(signal?: AbortSignal): Promise<number> {
    const grown = await runAsPlatform("audit: find tenant trees that grew since their last checkpoint", () =>
      this.#o.db.transaction((em) =>
        em.execute<{ tenant_id: string }[]>(
          `select t.tenant_id from (select tenant_id, max(leaf_index) + 1 as size from leaves group by tenant_id) t
           left join (select tenant_id, max(size) as size from checkpoints group by tenant_id) c on c.tenant_id = t.tenant_id
           where c.size is null or c.size < t.size`,
        ),
      ),
    );
    let signed = 0;
    for (const { tenant_id } of grown) {
      if (signal?.aborted === true) break;
      try {
        await this.sign(tenant_id);
        signed += 1;
      } catch (err) {
        this.#o.logger.warn({ tenantId: tenant_id, err: describeError(err) }, "signing a checkpoint failed; retrying next round");
      }
    }
    return signed;
  }

  /** The Ed25519 seed of the checkpoint key, created (and sealed through keys) on first use. */
  seed(): Promise<Uint8Array> {
    this.#seed ??= this.#loadSeed().catch((err: unknown) => {
      this.#seed = undefined;
      throw err;
    });
    return this.#seed;
  }

  async #loadSeed(): Promise<Uint8Array> {
    const read = (): Promise<{ sealed: Buffer }[]> =>
      runAsPlatform("audit: read its checkpoint signing key", () => this.#o.db.transaction((em) => em.execute<{ sealed: Buffer }[]>("select sealed from signing_keys where id = ?", [signingKeyId])));
    let [row] = await read();
    if (row === undefined) {
      const seed = randomBytes(32);
      const publicKey = Buffer.from(ed25519Signer("audit", seed).verifierKey.split("+")[2]!, "base64").subarray(1);
      const sealed = await this.#o.privacy.sealServiceSecret(signingKeyId, seed);
      await runAsPlatform("audit: store its checkpoint signing key", () =>
        this.#o.db.transaction((em) =>
          em.execute("insert into signing_keys (id, tenant_id, public_key, sealed, created_at) values (?, null, ?, ?, now()) on conflict do nothing", [signingKeyId, publicKey, sealed]),
        ),
      );
      [row] = await read();
    }
    if (row === undefined) throw new Error("the checkpoint signing key could not be stored");
    return new Uint8Array(await this.#o.privacy.openServiceSecret(signingKeyId, row.sealed));
  }
}
