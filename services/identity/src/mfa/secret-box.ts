import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * AES-256-GCM sealing of small secrets (TOTP shared secrets) at rest.
 *
 * INTERIM: the keys service (per-tenant data keys, envelope encryption,
 * crypto-shredding) does not exist yet, so this derives one key from
 * BULWARK_SERVICE_SECRET with HKDF-SHA256 (info "bulwark/identity/totp/v1").
 * When keys exists, TOTP secrets move to `keys.v1.EncryptionService` and
 * rows sealed here (version byte 1) are re-encrypted there on first use;
 * the version byte is what tells the two apart.
 *
 * Layout: version (1 byte) | IV (12) | tag (16) | ciphertext. The associated
 * data binds a ciphertext to its tenant and user, so a row copied to another
 * user or tenant does not open.
 */
export class SecretBox {
  static readonly version = 1;
  readonly #key: Buffer;

  /** `serviceSecret`: BULWARK_SERVICE_SECRET (at least 32 characters, checked by config). */
  constructor(serviceSecret: string) {
    this.#key = Buffer.from(hkdfSync("sha256", Buffer.from(serviceSecret, "utf8"), Buffer.alloc(0), "bulwark/identity/totp/v1", 32));
  }

  /** Encrypts `plaintext`, bound to `tenantId` and `userId`. */
  seal(plaintext: Uint8Array, tenantId: string, userId: string): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(aad(tenantId, userId));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.from([SecretBox.version]), iv, cipher.getAuthTag(), body]);
  }

  /** Decrypts a sealed value; throws SecretBoxError if it is not ours, altered or bound to another user. */
  open(sealed: Uint8Array, tenantId: string, userId: string): Buffer {
    const box = Buffer.from(sealed);
    if (box.length < 29 || box[0] !== SecretBox.version) throw new SecretBoxError("unknown ciphertext version");
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, box.subarray(1, 13));
      decipher.setAAD(aad(tenantId, userId));
      decipher.setAuthTag(box.subarray(13, 29));
      return Buffer.concat([decipher.update(box.subarray(29)), decipher.final()]);
    } catch (cause) {
      throw new SecretBoxError("the ciphertext does not open", { cause });
    }
  }
}

/** A sealed secret could not be opened (wrong key, version, binding or altered bytes). */
export class SecretBoxError extends Error {
  override name = "SecretBoxError";
}

function aad(tenantId: string, userId: string): Buffer {
  return Buffer.from(`bulwark/identity/totp/v1\0${tenantId}\0${userId}`, "utf8");
}
