import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { MasterKeyError, type KeyProvider, type WrappedKey } from "./provider.js";

/** A master key version: its id and 32 bytes of key. */
export interface MasterKey {
  readonly id: string;
  readonly key: Buffer;
}

/**
 * Parses BULWARK_MASTER_KEYS: `id:base64key` entries separated by commas,
 * e.g. `v2:…,v1:…`. Each key is 32 random bytes (base64 or base64url,
 * `openssl rand -base64 32`). The active key — the one new data keys are
 * wrapped with — is the entry marked with a leading `*`, or else the first.
 * The others only unwrap, until `bulwark-keys rewrap-master` has moved
 * every stored key to the active one and they can be removed. Throws with a
 * message that names the variable, never a key.
 */
export function parseMasterKeys(value: string): { active: string; keys: MasterKey[] } {
  const keys: MasterKey[] = [];
  let marked: string | undefined;
  for (const raw of value.split(",")) {
    const entry = raw.trim();
    const m = /^(\*?)([A-Za-z0-9_-]{1,32}):([A-Za-z0-9+/_-]{43}=?)$/.exec(entry);
    if (m === null) throw new MasterKeyError("BULWARK_MASTER_KEYS: each entry must be id:base64key with a 32-byte key");
    const [, star, id, b64] = m as unknown as [string, string, string, string];
    const key = Buffer.from(b64.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (key.length !== 32) throw new MasterKeyError("BULWARK_MASTER_KEYS: each key must be 32 bytes");
    if (keys.some((k) => k.id === id)) throw new MasterKeyError(`BULWARK_MASTER_KEYS: the id "${id}" appears twice`);
    if (star === "*") {
      if (marked !== undefined) throw new MasterKeyError("BULWARK_MASTER_KEYS: only one entry may be marked active with *");
      marked = id;
    }
    keys.push({ id, key });
  }
  if (keys.length === 0) throw new MasterKeyError("BULWARK_MASTER_KEYS: no key");
  return { active: marked ?? keys[0]!.id, keys };
}

const wrapInfo = "bulwark/keys/master/v1";

/**
 * The master keyring held in this process's memory (from
 * BULWARK_MASTER_KEYS): wraps data keys with AES-256-GCM under the active
 * master key. A wrapped key is nonce (12) | ciphertext (32) | tag (16),
 * bound to its ring and version by the associated data, so a wrapped key
 * copied to another ring's row does not open.
 */
export class LocalKeyring implements KeyProvider {
  readonly name = "local keyring";
  readonly activeKeyId: string;
  readonly keyIds: readonly string[];
  readonly #keys: ReadonlyMap<string, Buffer>;

  constructor(active: string, keys: readonly MasterKey[]) {
    const map = new Map(keys.map((k) => [k.id, Buffer.from(k.key)]));
    if (!map.has(active)) throw new MasterKeyError("the active master key is not in the keyring");
    this.activeKeyId = active;
    this.keyIds = [...map.keys()];
    this.#keys = map;
  }

  /** The keyring of a BULWARK_MASTER_KEYS value. */
  static fromEnv(value: string): LocalKeyring {
    const { active, keys } = parseMasterKeys(value);
    return new LocalKeyring(active, keys);
  }

  async wrap(dataKey: Uint8Array, aad: Uint8Array): Promise<WrappedKey> {
    const key = this.#keys.get(this.activeKeyId)!;
    const nonce = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", key, nonce);
    cipher.setAAD(Buffer.concat([Buffer.from(wrapInfo), Buffer.from([0]), aad]));
    const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { masterKeyId: this.activeKeyId, wrapped: Buffer.concat([nonce, body, cipher.getAuthTag()]) };
  }

  async unwrap(masterKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    const key = this.#keys.get(masterKeyId);
    if (key === undefined) throw new MasterKeyError(`master key "${masterKeyId}" is not in BULWARK_MASTER_KEYS`);
    const box = Buffer.from(wrapped);
    if (box.length < 12 + 16 + 1) throw new MasterKeyError("a wrapped key is truncated");
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, box.subarray(0, 12));
      decipher.setAAD(Buffer.concat([Buffer.from(wrapInfo), Buffer.from([0]), aad]));
      decipher.setAuthTag(box.subarray(box.length - 16));
      return Buffer.concat([decipher.update(box.subarray(12, box.length - 16)), decipher.final()]);
    } catch (cause) {
      throw new MasterKeyError(`a key wrapped by master key "${masterKeyId}" does not open`, { cause });
    }
  }
}

/**
 * The development master key: derived (HKDF-SHA256) from a fixed label, so
 * a local mesh keeps decrypting across restarts. It protects nothing —
 * production refuses to start without BULWARK_MASTER_KEYS.
 */
export function developmentKeyring(): LocalKeyring {
  const key = Buffer.from(hkdfSync("sha256", Buffer.from("bulwark development master key, not secret"), Buffer.alloc(0), wrapInfo, 32));
  return new LocalKeyring("dev", [{ id: "dev", key }]);
}

/**
 * The provider of a service's configuration: BULWARK_MASTER_KEYS when set;
 * otherwise the development key (configuration refuses production without
 * the variable).
 */
export function keyProviderFromConfig(config: { BULWARK_MASTER_KEYS?: string | undefined; NODE_ENV: string }): KeyProvider {
  if (config.BULWARK_MASTER_KEYS !== undefined) return LocalKeyring.fromEnv(config.BULWARK_MASTER_KEYS);
  if (config.NODE_ENV === "production") throw new MasterKeyError("BULWARK_MASTER_KEYS: required in production");
  return developmentKeyring();
}
