import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";

/**
 * C2SP checkpoints (c2sp.org/tlog-checkpoint) in C2SP signed notes
 * (c2sp.org/signed-note) with Ed25519, byte for byte as
 * golang.org/x/mod/sumdb/note and transparency-dev/formats/log read them.
 */

/** The checkpoint body: origin, decimal size, base64 root hash, each line ending in a newline. */
export function checkpointBody(origin: string, size: number, root: Uint8Array): string {
  return `${origin}\n${size}\n${Buffer.from(root).toString("base64")}\n`;
}

/** The 4-byte key hash of an Ed25519 note key: SHA-256(name || "\n" || 0x01 || public key)[:4]. */
export function keyHash(name: string, publicKey: Uint8Array): Buffer {
  return createHash("sha256").update(`${name}\n`).update(Buffer.from([1])).update(publicKey).digest().subarray(0, 4);
}

/** `<name>+<8 hex key hash>+<base64(0x01 || public key)>`. */
export function verifierKey(name: string, publicKey: Uint8Array): string {
  return `${name}+${keyHash(name, publicKey).toString("hex")}+${Buffer.concat([Buffer.from([1]), publicKey]).toString("base64")}`;
}

/** An Ed25519 note signer: the private key in memory, its raw public key. */
export class NoteSigner {
  readonly #key: KeyObject;
  readonly publicKey: Buffer;

  constructor(pkcs8: Uint8Array) {
    this.#key = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
    const jwk = createPublicKey(this.#key).export({ format: "jwk" });
    this.publicKey = Buffer.from(String(jwk.x), "base64url");
  }

  /** A fresh key, PKCS#8 DER. */
  static generate(): Buffer {
    return generateKeyPairSync("ed25519").privateKey.export({ format: "der", type: "pkcs8" });
  }

  /** The signed note: body, a blank line, one signature line `— <name> <base64(key hash || signature)>`. */
  sign(name: string, body: string): string {
    if (!body.endsWith("\n")) throw new Error("a note body ends with a newline");
    const sig = sign(null, Buffer.from(body, "utf8"), this.#key);
    return `${body}\n\u2014 ${name} ${Buffer.concat([keyHash(name, this.publicKey), sig]).toString("base64")}\n`;
  }
}
