import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from "node:crypto";

/** Raised when a service key or the public key list is malformed. */
export class MeshKeyError extends Error {
  override name = "MeshKeyError";
}

/** The DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows. */
const pkcs8Ed25519Prefix = Buffer.from("302e020100300506032b657004220420", "hex");

/** The seed a development mesh derives a service's key from (never in production). */
const devSeedLabel = "bulwark-dev-mesh-key:";

/**
 * The Ed25519 private key of a 32-byte seed. The seed is the whole secret:
 * `BULWARK_SERVICE_KEY` holds it, base64url.
 */
export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new MeshKeyError("an Ed25519 seed is 32 bytes");
  return createPrivateKey({ key: Buffer.concat([pkcs8Ed25519Prefix, seed]), format: "der", type: "pkcs8" });
}

/** The raw 32-byte public key of an Ed25519 key, base64url (the form BULWARK_SERVICE_PUBLIC_KEYS lists). */
export function rawPublicKey(key: KeyObject): string {
  const jwk = (key.type === "private" ? createPublicKey(key) : key).export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new MeshKeyError("not an Ed25519 key");
  return jwk.x;
}

function publicKeyFromRaw(x: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(x)) throw new MeshKeyError("a public key is 32 bytes, base64url");
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
}

/** The key a development mesh gives `service` when none is configured: derived from its name, so every process agrees. */
export function devServiceSeed(service: string): Buffer {
  return createHash("sha256").update(devSeedLabel + service).digest();
}

/** What a MeshKeys is built from. */
export interface MeshKeysOptions {
  /** This service's name: what it signs as. */
  readonly service: string;
  /** This service's Ed25519 seed. */
  readonly seed: Uint8Array;
  /** The public key (raw, base64url) of every service this one trusts, by name. */
  readonly publicKeys?: Readonly<Record<string, string>>;
  /**
   * Development only: a service missing from `publicKeys` is trusted with its
   * derived development key. Never set in production.
   */
  readonly deriveMissing?: boolean;
}

/**
 * The signing identity of one service in the mesh and the public keys of the
 * others. Each service holds only its own private key (Ed25519), so it can
 * sign service assertions and event envelopes as itself and as nobody else;
 * a receiver checks a signature against the public key of the service that
 * claims to have made it. Replaces the single shared HMAC secret, which let
 * any holder speak for every service.
 */
export class MeshKeys {
  readonly service: string;
  readonly privateKey: KeyObject;
  readonly #publics = new Map<string, KeyObject>();
  readonly #deriveMissing: boolean;

  constructor(options: MeshKeysOptions) {
    this.service = options.service;
    this.privateKey = privateKeyFromSeed(options.seed);
    this.#deriveMissing = options.deriveMissing === true;
    for (const [name, x] of Object.entries(options.publicKeys ?? {})) this.#publics.set(name, publicKeyFromRaw(x));
    const own = this.#publics.get(this.service);
    if (own !== undefined && rawPublicKey(own) !== rawPublicKey(this.privateKey)) {
      throw new MeshKeyError(`the public key listed for ${this.service} does not match its private key`);
    }
    this.#publics.set(this.service, createPublicKey(this.privateKey));
  }

  /** A development mesh: every service's key derived from its name (tests, `npm start`). */
  static development(service: string): MeshKeys {
    return new MeshKeys({ service, seed: devServiceSeed(service), deriveMissing: true });
  }

  /**
   * The keys of a configured service: its seed (base64url) and the list
   * `name=<raw public key>,…`. Without a seed a development key is used, and
   * then unlisted services get development keys too.
   */
  static fromConfig(service: string, seed: string | undefined, publicKeys: string | undefined): MeshKeys {
    const listed = parsePublicKeys(publicKeys ?? "");
    if (seed === undefined) return new MeshKeys({ service, seed: devServiceSeed(service), publicKeys: listed, deriveMissing: true });
    const bytes = Buffer.from(seed, "base64url");
    if (bytes.length !== 32 || bytes.toString("base64url") !== seed.replace(/=+$/, "")) throw new MeshKeyError("BULWARK_SERVICE_KEY must be a 32-byte Ed25519 seed, base64url");
    return new MeshKeys({ service, seed: bytes, publicKeys: listed });
  }

  /** The public key of a service, if it is trusted. */
  publicKey(service: string): KeyObject | undefined {
    let key = this.#publics.get(service);
    if (key === undefined && this.#deriveMissing && /^[a-z][a-z0-9_-]{0,31}$/.test(service)) {
      key = createPublicKey(privateKeyFromSeed(devServiceSeed(service)));
      this.#publics.set(service, key);
    }
    return key;
  }

  /** A detached Ed25519 signature of `data` by this service, base64url. */
  sign(data: Uint8Array): string {
    return edSign(null, data, this.privateKey).toString("base64url");
  }

  /**
   * `verify` on libuv's thread pool: many checks at once (a batch of
   * events) run on every core and leave the event loop free. Never rejects.
   */
  verifyAsync(service: string, data: Uint8Array, signature: string): Promise<boolean> {
    const key = this.publicKey(service);
    if (key === undefined || !/^[A-Za-z0-9_-]{86}$/.test(signature)) return Promise.resolve(false);
    return new Promise((resolve) => {
      try {
        edVerify(null, data, key, Buffer.from(signature, "base64url"), (err, ok) => resolve(err === null && ok));
      } catch {
        resolve(false);
      }
    });
  }

  /** True when `signature` is `service`'s signature of `data`. Never throws. */
  verify(service: string, data: Uint8Array, signature: string): boolean {
    const key = this.publicKey(service);
    if (key === undefined || !/^[A-Za-z0-9_-]{86}$/.test(signature)) return false;
    try {
      return edVerify(null, data, key, Buffer.from(signature, "base64url"));
    } catch {
      return false;
    }
  }
}

/** Parses `name=<base64url>,name=<base64url>`; throws MeshKeyError naming the bad entry. */
export function parsePublicKeys(list: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of list.split(",").map((e) => e.trim()).filter((e) => e !== "")) {
    const [name, key, extra] = entry.split("=");
    if (name === undefined || key === undefined || extra !== undefined || !/^[a-z][a-z0-9_-]{0,31}$/.test(name)) throw new MeshKeyError(`BULWARK_SERVICE_PUBLIC_KEYS: "${entry.slice(0, 40)}" is not name=<key>`);
    try {
      publicKeyFromRaw(key);
    } catch {
      throw new MeshKeyError(`BULWARK_SERVICE_PUBLIC_KEYS: the key of ${name} is not 32 bytes, base64url`);
    }
    out[name] = key;
  }
  return out;
}
