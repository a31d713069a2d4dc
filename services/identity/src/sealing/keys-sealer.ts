import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { EncryptionService } from "@bulwark/contracts";
import { runAsService } from "@bulwark/core";
import { SecretBox } from "../mfa/secret-box.js";

/** Whose TOTP secret: a tenant's user, or a platform operator. */
export type TotpOwner = { readonly tenantId: string; readonly userId: string } | { readonly operatorId: string };

/** The first byte of what identity stores: SecretBox's interim layout, or ciphertext of the keys service. */
export const sealedByKeys = 2;

/** What the token-signing keys need from a sealer (a test may give its own). */
export interface SigningKeySealer {
  sealSigningKey(kid: string, privateJwk: string): Promise<Buffer>;
  openSigningKey(kid: string, sealed: Uint8Array): Promise<string>;
}

/** The one answer when keys cannot be reached: names the dependency, never its address. */
export function keysUnavailable(cause?: unknown): ConnectError {
  return new ConnectError("the keys service is unavailable; retry", Code.Unavailable, undefined, undefined, cause);
}

const unavailableCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Canceled, Code.ResourceExhausted]);

/**
 * Identity's secrets at rest, encrypted through the keys service: users'
 * TOTP secrets under their tenant's ring (purpose "identity.totp", bound to
 * the user), operators' TOTP secrets and the token-signing private keys
 * under identity's own service ring (purposes "identity.operator_totp" and
 * "identity.signing_key", bound to the operator or key id), which only
 * identity calling as itself can use. Stored as the byte 2 followed by the
 * keys ciphertext; rows still in SecretBox's interim layout (byte 1) are
 * opened with BULWARK_SERVICE_SECRET and re-encrypted by the caller (on
 * first use, and by the background migration in migrate-legacy.ts).
 * Decrypted TOTP secrets are cached in memory (bounded LRU, 10 minutes).
 */
export class KeysSealer implements SigningKeySealer {
  readonly #keys: Pick<Client<typeof EncryptionService>, "encrypt" | "decrypt">;
  readonly #legacy: SecretBox;
  readonly #cache = new LRUCache<string, string>({ max: 10_000, ttl: 600_000 });

  constructor(keys: Pick<Client<typeof EncryptionService>, "encrypt" | "decrypt">, legacy: SecretBox) {
    this.#keys = keys;
    this.#legacy = legacy;
  }

  /** Encrypts a TOTP secret through keys. */
  async sealTotp(owner: TotpOwner, secret: string): Promise<Buffer> {
    const plaintext = Buffer.from(secret, "utf8");
    if ("operatorId" in owner) return this.#seal(undefined, { plaintext, purpose: "identity.operator_totp", context: { operator_id: owner.operatorId }, serviceRing: true });
    return this.#seal(owner.tenantId, { plaintext, purpose: "identity.totp", context: { user_id: owner.userId } });
  }

  /** Decrypts a stored TOTP secret; `legacy` says it is still in the interim layout and should be re-encrypted. */
  async openTotp(owner: TotpOwner, sealed: Uint8Array): Promise<{ secret: string; legacy: boolean }> {
    if (sealed[0] === SecretBox.version) {
      const secret = "operatorId" in owner ? this.#legacy.open(sealed, "platform", owner.operatorId) : this.#legacy.open(sealed, owner.tenantId, owner.userId);
      return { secret: secret.toString("utf8"), legacy: true };
    }
    const key = createHash("sha256").update(sealed).digest("hex");
    const hit = this.#cache.get(key);
    if (hit !== undefined) return { secret: hit, legacy: false };
    const plain =
      "operatorId" in owner
        ? await this.#open(undefined, sealed, "identity.operator_totp", { operator_id: owner.operatorId })
        : await this.#open(owner.tenantId, sealed, "identity.totp", { user_id: owner.userId });
    const secret = plain.toString("utf8");
    this.#cache.set(key, secret);
    return { secret, legacy: false };
  }

  async sealSigningKey(kid: string, privateJwk: string): Promise<Buffer> {
    return this.#seal(undefined, { plaintext: Buffer.from(privateJwk, "utf8"), purpose: "identity.signing_key", context: { kid }, serviceRing: true });
  }

  async openSigningKey(kid: string, sealed: Uint8Array): Promise<string> {
    return (await this.#open(undefined, sealed, "identity.signing_key", { kid })).toString("utf8");
  }

  async #seal(tenantId: string | undefined, req: { plaintext: Uint8Array; purpose: string; context: Record<string, string>; serviceRing?: boolean }): Promise<Buffer> {
    const { ciphertext } = await this.#call(tenantId, () => this.#keys.encrypt(req));
    return Buffer.concat([Buffer.from([sealedByKeys]), ciphertext]);
  }

  async #open(tenantId: string | undefined, sealed: Uint8Array, purpose: string, context: Record<string, string>): Promise<Buffer> {
    if (sealed[0] !== sealedByKeys) throw new ConnectError("a stored secret is in an unknown layout", Code.Internal);
    const { plaintext } = await this.#call(tenantId, () => this.#keys.decrypt({ ciphertext: sealed.subarray(1), purpose, context }));
    return Buffer.from(plaintext);
  }

  /** Calls keys as identity itself (in the tenant, or outside every tenant for its own ring). */
  async #call<T>(tenantId: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await runAsService("identity", tenantId, fn);
    } catch (err) {
      const ce = ConnectError.from(err);
      if (unavailableCodes.has(ce.code)) throw keysUnavailable(err);
      throw new ConnectError("a stored secret could not be decrypted or encrypted", Code.Internal, undefined, undefined, err);
    }
  }
}
