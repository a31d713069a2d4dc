import { randomBytes } from "node:crypto";
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JSONWebKeySet, type JWK } from "jose";
import { runAsPlatform, type JwksSource } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { SigningKeySealer } from "../sealing/keys-sealer.js";

/** How long one key signs before the next one takes over. */
export const rotationIntervalMs = 24 * 3_600_000;
/**
 * How long a retired key stays published: the longest access-token lifetime
 * a tenant policy allows (24 hours) plus clock skew, so every token a key
 * signed still verifies until it expires.
 */
export const publishAfterRetirementMs = 24 * 3_600_000 + 5 * 60_000;

/** The key that signs now. */
export interface ActiveKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly retireAfter: Date;
}

interface KeyRow {
  kid: string;
  private_jwk: string | null;
  private_jwk_sealed: Buffer | null;
  public_jwk: string;
  retire_after: Date | string;
  expires_at: Date | string;
}

/**
 * Identity's token signing keys (Ed25519), in the platform table
 * `signing_keys`. A new key is made every `rotationIntervalMs` (or on
 * `rotate()`); the previous one stops signing at once and stays in the
 * published JWKS until no token it signed can be valid. Replicas share the
 * table; an advisory lock keeps two of them from rotating at the same time.
 * It is also identity's own JwksSource, so identity verifies its tokens
 * without a network hop.
 *
 * Private keys are stored only encrypted through the keys service
 * (identity's own service key ring, purpose "identity.signing_key", bound
 * to the kid) and decrypted into memory when a key becomes the signing
 * key. Rows from before that (plain JWK) are still read, and moved onto
 * keys by the background migration (sealing/migrate-legacy.ts).
 */
export class SigningKeyStore implements JwksSource {
  readonly #db: Database;
  readonly #sealer: SigningKeySealer;
  readonly #now: () => Date;
  #active: ActiveKey | undefined;
  #activeLoadedAt = 0;
  #jwks: { set: JSONWebKeySet; at: number } | undefined;
  #pending: Promise<ActiveKey> | undefined;

  constructor(db: Database, sealer: SigningKeySealer, now: () => Date = () => new Date()) {
    this.#db = db;
    this.#sealer = sealer;
    this.#now = now;
  }

  /** The key to sign with, creating or rotating one when due. */
  async active(): Promise<ActiveKey> {
    const now = this.#now().getTime();
    const a = this.#active;
    if (a !== undefined && a.retireAfter.getTime() > now && now - this.#activeLoadedAt < 60_000) return a;
    this.#pending ??= this.#loadOrCreate(false).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** Makes a new key the signing key now; the old one stays published. */
  async rotate(): Promise<string> {
    const key = await this.#loadOrCreate(true);
    return key.kid;
  }

  /** The published key set: every key whose tokens may still be valid. */
  async keySet(refresh = false): Promise<JSONWebKeySet> {
    const now = this.#now().getTime();
    // A forced refresh (a token named an unknown kid) reads the table at most once a second.
    if (this.#jwks !== undefined && now - this.#jwks.at < (refresh ? 1_000 : 5_000)) return this.#jwks.set;
    if (this.#jwks === undefined) await this.active();
    const rows = await runAsPlatform("publish the token signing keys", () =>
      this.#db.transaction((em) => em.execute<KeyRow[]>("select kid, public_jwk from signing_keys where expires_at > ? order by created_at desc", [new Date(now)])),
    );
    const set: JSONWebKeySet = { keys: rows.map((r) => JSON.parse(r.public_jwk) as JWK) };
    this.#jwks = { set, at: now };
    return set;
  }

  /** The JWKS as served at /.well-known/jwks.json and by GetJwks. */
  async jwksJson(): Promise<string> {
    return JSON.stringify(await this.keySet());
  }

  async #loadOrCreate(force: boolean): Promise<ActiveKey> {
    const key = await runAsPlatform("rotate the token signing keys", () =>
      this.#db.transaction(async (em) => {
        await em.execute("select pg_advisory_xact_lock(hashtext('bulwark.identity.signing_keys'))");
        const now = this.#now();
        const rows = await em.execute<KeyRow[]>("select kid, private_jwk, private_jwk_sealed, public_jwk, retire_after, expires_at from signing_keys where retire_after > ? order by created_at desc limit 1", [now]);
        const current = rows[0];
        if (current !== undefined && !force) return this.#toActive(current);
        return this.#create(em, now);
      }),
    );
    this.#active = key;
    this.#activeLoadedAt = this.#now().getTime();
    this.#jwks = undefined;
    return key;
  }

  async #create(em: EntityManager, now: Date): Promise<ActiveKey> {
    const kid = `sk_${now.getTime().toString(36)}${randomBytes(6).toString("hex")}`;
    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    const base = { kid, alg: "EdDSA", use: "sig" };
    const privateJwk = { ...(await exportJWK(privateKey)), ...base };
    const publicJwk = { ...(await exportJWK(publicKey)), ...base };
    const retireAfter = new Date(now.getTime() + rotationIntervalMs);
    const sealed = await this.#sealer.sealSigningKey(kid, JSON.stringify(privateJwk));
    // Older keys stop signing now and stay published until their tokens expire.
    await em.execute("update signing_keys set retire_after = ?, expires_at = least(expires_at, ?) where retire_after > ?", [now, new Date(now.getTime() + publishAfterRetirementMs), now]);
    await em.execute("insert into signing_keys (kid, tenant_id, private_jwk, private_jwk_sealed, public_jwk, created_at, retire_after, expires_at) values (?, null, null, ?, ?, ?, ?, ?)", [
      kid,
      sealed,
      JSON.stringify(publicJwk),
      now,
      retireAfter,
      new Date(retireAfter.getTime() + publishAfterRetirementMs),
    ]);
    return { kid, privateKey: privateKey, retireAfter };
  }

  /** The signing key of a row, its private half decrypted through keys (or read from a row not moved yet). */
  async #toActive(row: KeyRow): Promise<ActiveKey> {
    const json = row.private_jwk_sealed !== null ? await this.#sealer.openSigningKey(row.kid, row.private_jwk_sealed) : row.private_jwk;
    if (json === null) throw new Error("a signing key row has no private key");
    const privateKey = (await importJWK(JSON.parse(json) as JWK, "EdDSA")) as CryptoKey;
    return { kid: row.kid, privateKey, retireAfter: new Date(row.retire_after) };
  }
}


