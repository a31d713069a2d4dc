import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { KeysClients } from "@bulwark/contracts";
import { runAsService } from "@bulwark/core";

/** Purposes compliance's data keys are bound to in the keys service. */
export const purposes = { document: "compliance.export.document", bundle: "compliance.export.bundle", corrections: "compliance.rectification.corrections" } as const;

/**
 * Envelope encryption of export documents and bundles through the keys
 * service: a fresh data key from EncryptionService.GenerateDataKey under the
 * tenant's ring (bound to the purpose and the request id), AES-256-GCM
 * here, and only the wrapped key stored beside the ciphertext. Opening it
 * asks keys to decrypt the wrapped key; once the tenant's ring is destroyed
 * nothing opens it again.
 *
 * Layout: u16 length of the wrapped key, the wrapped key, 12-byte nonce,
 * 16-byte tag, ciphertext.
 */
export async function seal(keys: KeysClients, tenantId: string, purpose: string, requestId: string, plaintext: Uint8Array): Promise<Buffer> {
  const dk = await runAsService("compliance", tenantId, () => keys.encryption.generateDataKey({ purpose, context: { request: requestId } }));
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", dk.plaintextKey, nonce);
  cipher.setAAD(Buffer.from(`${tenantId}/${requestId}/${purpose}`));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(dk.wrappedKey.length);
  dk.plaintextKey.fill(0);
  return Buffer.concat([len, Buffer.from(dk.wrappedKey), nonce, cipher.getAuthTag(), ct]);
}

/** Opens what `seal` sealed (keys decrypts the data key). */
export async function open(keys: KeysClients, tenantId: string, purpose: string, requestId: string, sealed: Uint8Array): Promise<Buffer> {
  const buf = Buffer.from(sealed);
  const len = buf.readUInt16BE(0);
  const wrapped = buf.subarray(2, 2 + len);
  const nonce = buf.subarray(2 + len, 14 + len);
  const tag = buf.subarray(14 + len, 30 + len);
  const ct = buf.subarray(30 + len);
  const dk = await runAsService("compliance", tenantId, () => keys.encryption.decrypt({ ciphertext: wrapped, purpose, context: { request: requestId } }));
  const decipher = createDecipheriv("aes-256-gcm", dk.plaintext, nonce);
  decipher.setAAD(Buffer.from(`${tenantId}/${requestId}/${purpose}`));
  decipher.setAuthTag(tag);
  const out = Buffer.concat([decipher.update(ct), decipher.final()]);
  dk.plaintext.fill(0);
  return out;
}
