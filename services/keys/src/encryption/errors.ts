import { failedPrecondition, invalidArgument } from "@bulwark/core";

/**
 * The documented refusals of everything that decrypts (EncryptionService's
 * Decrypt, Rewrap and batches; secrets and webhook secrets inside).
 */

/** The ring was crypto-shredded: FAILED_PRECONDITION "key destroyed". */
export function keyDestroyed(): Error {
  return failedPrecondition("key destroyed");
}

/** The ciphertext's version is below the ring's minimum decryption version. */
export function versionDisabled(): Error {
  return failedPrecondition("key version disabled: it is below the ring's minimum decryption version");
}

/**
 * One answer for ciphertext that is malformed, altered, another tenant's, or
 * bound to another purpose or context: which of these it was is not said.
 */
export function doesNotDecrypt(field = "ciphertext"): Error {
  return invalidArgument(field, "ciphertext does not decrypt with this tenant, purpose and context");
}
