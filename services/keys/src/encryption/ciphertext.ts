import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from "node:crypto";

/**
 * The byte format of keys' ciphertext, version 1 (all integers big-endian):
 *
 *   offset  size  field
 *   0       1     format version, 0x01
 *   1       1     n, the length of the key id (1-64)
 *   2       n     key id, ASCII: the key ring ("kr_…")
 *   2+n     4     key version (uint32)
 *   6+n     12    nonce, random for every encryption
 *   18+n    m     AES-256-GCM ciphertext of the m-byte plaintext
 *   18+n+m  16    GCM authentication tag
 *
 * The associated data (authenticated, not stored) is the header — bytes 0
 * to 6+n, so the format, key id and version cannot be altered — followed by
 * the tenant, the purpose and the context:
 *
 *   header | u16 len | tenant id (UTF-8; empty for a service ring)
 *          | u16 len | purpose
 *          | u16 count | count × (u16 len | key | u16 len | value), keys sorted by their UTF-8 bytes
 *
 * so ciphertext moved to another tenant, purpose, context or key version
 * fails to authenticate.
 */
export const formatVersion = 1;
const nonceLength = 12;
const tagLength = 16;

/** The parsed header of a ciphertext. */
export interface CiphertextHeader {
  readonly keyId: string;
  readonly version: number;
  /** Bytes 0 .. 6+n, part of the associated data. */
  readonly header: Buffer;
  readonly nonce: Buffer;
  readonly body: Buffer;
  readonly tag: Buffer;
}

/** Ciphertext that is not of this format (or truncated). */
export class MalformedCiphertextError extends Error {
  override name = "MalformedCiphertextError";
}

/** Splits ciphertext into its fields; throws MalformedCiphertextError. */
export function parseCiphertext(bytes: Uint8Array): CiphertextHeader {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 2 || b[0] !== formatVersion) throw new MalformedCiphertextError("unknown ciphertext format");
  const n = b[1]!;
  if (n < 1 || n > 64 || b.length < 2 + n + 4 + nonceLength + tagLength) throw new MalformedCiphertextError("truncated ciphertext");
  const keyId = b.toString("latin1", 2, 2 + n);
  if (!/^[A-Za-z0-9_]+$/.test(keyId)) throw new MalformedCiphertextError("bad key id");
  const version = b.readUInt32BE(2 + n);
  const headerEnd = 6 + n;
  return {
    keyId,
    version,
    header: b.subarray(0, headerEnd),
    nonce: b.subarray(headerEnd, headerEnd + nonceLength),
    body: b.subarray(headerEnd + nonceLength, b.length - tagLength),
    tag: b.subarray(b.length - tagLength),
  };
}

function header(keyId: string, version: number): Buffer {
  const id = Buffer.from(keyId, "latin1");
  const h = Buffer.alloc(6 + id.length);
  h[0] = formatVersion;
  h[1] = id.length;
  id.copy(h, 2);
  h.writeUInt32BE(version, 2 + id.length);
  return h;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function field(value: string): Buffer[] {
  const bytes = Buffer.from(value, "utf8");
  return [u16(bytes.length), bytes];
}

/** The associated data of a ciphertext: its header, tenant, purpose and canonical context. */
export function associatedData(hdr: Buffer, tenantId: string, purpose: string, context: Readonly<Record<string, string>>): Buffer {
  const entries = Object.entries(context)
    .map(([k, v]) => [Buffer.from(k, "utf8"), Buffer.from(v, "utf8")] as const)
    .sort(([a], [b]) => Buffer.compare(a, b));
  const parts: Buffer[] = [hdr, ...field(tenantId), ...field(purpose), u16(entries.length)];
  for (const [k, v] of entries) parts.push(u16(k.length), k, u16(v.length), v);
  return Buffer.concat(parts);
}

/** What binds a ciphertext besides its key. */
export interface Binding {
  readonly tenantId: string;
  readonly purpose: string;
  readonly context: Readonly<Record<string, string>>;
}

/** Encrypts `plaintext` under one key version, bound to `binding`. */
export function seal(key: KeyObject, keyId: string, version: number, plaintext: Uint8Array, binding: Binding): Buffer {
  const hdr = header(keyId, version);
  const nonce = randomBytes(nonceLength);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(associatedData(hdr, binding.tenantId, binding.purpose, binding.context));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([hdr, nonce, body, cipher.getAuthTag()]);
}

/** Authentication failed: wrong key, tenant, purpose or context, or altered bytes. */
export class CiphertextAuthError extends Error {
  override name = "CiphertextAuthError";
}

/** Decrypts a parsed ciphertext; throws CiphertextAuthError when it does not authenticate. */
export function open(key: KeyObject, parsed: CiphertextHeader, binding: Binding): Buffer {
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, parsed.nonce);
    decipher.setAAD(associatedData(parsed.header, binding.tenantId, binding.purpose, binding.context));
    decipher.setAuthTag(parsed.tag);
    return Buffer.concat([decipher.update(parsed.body), decipher.final()]);
  } catch (cause) {
    throw new CiphertextAuthError("ciphertext does not authenticate", { cause });
  }
}
