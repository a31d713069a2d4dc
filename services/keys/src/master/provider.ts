/**
 * Where the master key lives. Data keys (one per key ring version) are
 * stored only wrapped by a master key; a provider wraps and unwraps them and
 * never hands out the master key itself. The local keyring
 * (BULWARK_MASTER_KEYS) is the provider today; AWS KMS (Encrypt/Decrypt with
 * an encryption context), GCP Cloud KMS or Vault Transit fit the same
 * interface: `masterKeyId` names the provider's key version, `aad` is passed
 * as the encryption context / additional authenticated data.
 */
export interface KeyProvider {
  /** Names the provider in logs and errors ("local keyring"). */
  readonly name: string;
  /** The master key version new data keys are wrapped with. */
  readonly activeKeyId: string;
  /** Every master key version this provider can unwrap with. */
  readonly keyIds: readonly string[];
  /** Wraps a data key with the active master key, bound to `aad`. */
  wrap(dataKey: Uint8Array, aad: Uint8Array): Promise<WrappedKey>;
  /** Unwraps a data key wrapped by `masterKeyId`; throws MasterKeyError if it does not open. */
  unwrap(masterKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer>;
}

/** A data key wrapped by a master key version. */
export interface WrappedKey {
  readonly masterKeyId: string;
  readonly wrapped: Buffer;
}

/** A wrapped key does not open: unknown master key version, altered bytes or another binding. */
export class MasterKeyError extends Error {
  override name = "MasterKeyError";
}
