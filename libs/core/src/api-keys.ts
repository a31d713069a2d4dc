import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { permissionCatalogue } from "./permissions.js";

/**
 * The text of a Bulwark API key, recognisable offline the way GitHub's
 * token formats are: a fixed prefix naming the environment, the public key
 * id, the secret, and a CRC32 of everything before it.
 *
 *   bwk_<env>_<key id>_<secret><checksum>
 *   env       live | test
 *   key id    16 base62 characters (public; the key's id is `key_<key id>`)
 *   secret    32 base62 characters (~190 bits from the CSPRNG)
 *   checksum  CRC-32 (IEEE 802.3, as zlib computes it) of the ASCII text
 *             `bwk_<env>_<key id>_<secret>`, in base62, left-padded with 0
 *             to 6 characters
 *
 * Base62 digits are `0-9A-Za-z` in that order. The whole key is 64
 * characters; `apiKeyPattern` finds one in text.
 */
export const apiKeyPrefix = "bwk_";

/** The environments a key can be for. */
export type ApiKeyEnvironment = "live" | "test";

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const keyIdLength = 16;
const secretLength = 32;
const checksumLength = 6;

/**
 * Finds API keys in text (global; use with `matchAll`). Groups: 1 the
 * environment, 2 the key id, 3 the secret, 4 the checksum. The lookarounds
 * keep it from matching inside a longer token.
 */
export const apiKeyPattern = /(?<![0-9A-Za-z_])bwk_(live|test)_([0-9A-Za-z]{16})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})(?![0-9A-Za-z_])/g;

/** The same pattern anchored, for one presented key. */
const exactPattern = /^bwk_(live|test)_([0-9A-Za-z]{16})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$/;

/** A well-formed key, split into its parts. */
export interface ParsedApiKey {
  readonly environment: ApiKeyEnvironment;
  /** `key_<key id>`: the key's id everywhere in the mesh. */
  readonly id: string;
  /** The secret; compare only its keyed hash, in constant time. */
  readonly secret: string;
  /** `bwk_<env>_<key id>`: the non-secret start shown in listings. */
  readonly prefix: string;
}

function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      // Rejection sampling keeps every digit equally likely (248 = 4 × 62).
      if (b < 248 && out.length < length) out += base62[b % 62];
    }
  }
  return out;
}

function toBase62(n: number, width: number): string {
  let out = "";
  let v = n;
  do {
    out = base62[v % 62] + out;
    v = Math.floor(v / 62);
  } while (v > 0);
  return out.padStart(width, "0");
}

/** The 6-character checksum of `bwk_<env>_<key id>_<secret>`. */
export function apiKeyChecksum(body: string): string {
  return toBase62(crc32(Buffer.from(body, "ascii")) >>> 0, checksumLength);
}

/** A fresh key: its text (show it once) and its parts. */
export function generateApiKey(environment: ApiKeyEnvironment): { readonly key: string; readonly parsed: ParsedApiKey } {
  const keyId = randomBase62(keyIdLength);
  const secret = randomBase62(secretLength);
  const body = `${apiKeyPrefix}${environment}_${keyId}_${secret}`;
  return { key: body + apiKeyChecksum(body), parsed: { environment, id: `key_${keyId}`, secret, prefix: `${apiKeyPrefix}${environment}_${keyId}` } };
}

/** True if `token` looks like a Bulwark API key at all (cheap; no checksum). */
export function looksLikeApiKey(token: string): boolean {
  return token.startsWith(apiKeyPrefix);
}

/**
 * The parts of a presented key if it is well formed and its checksum
 * holds; undefined otherwise (a typo, a truncated copy, a forgery that did
 * not bother with the checksum). Says nothing about whether it is valid.
 */
export function parseApiKey(token: string): ParsedApiKey | undefined {
  const m = exactPattern.exec(token);
  if (m === null) return undefined;
  const [, env, keyId, secret, checksum] = m as unknown as [string, ApiKeyEnvironment, string, string, string];
  if (apiKeyChecksum(`${apiKeyPrefix}${env}_${keyId}_${secret}`) !== checksum) return undefined;
  return { environment: env, id: `key_${keyId}`, secret, prefix: `${apiKeyPrefix}${env}_${keyId}` };
}

/** One key found in text by `findApiKeys`. */
export interface FoundApiKey {
  /** 1-based line number. */
  readonly line: number;
  readonly id: string;
  readonly environment: ApiKeyEnvironment;
  /** False when the text has the shape of a key but the checksum fails (not a real key). */
  readonly checksumValid: boolean;
}

/** Every key-shaped string in `text`, with its line and whether its checksum holds. Never returns a secret. */
export function findApiKeys(text: string): FoundApiKey[] {
  const found: FoundApiKey[] = [];
  const lineStarts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  for (const m of text.matchAll(apiKeyPattern)) {
    const [whole, env, keyId] = m as unknown as [string, ApiKeyEnvironment, string];
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= m.index) lo = mid;
      else hi = mid - 1;
    }
    found.push({ line: lo + 1, id: `key_${keyId}`, environment: env, checksumValid: parseApiKey(whole) !== undefined });
  }
  return found;
}

/**
 * Permissions no API key may hold: a user's own credentials and sessions
 * (`*.self`, they belong to a person signing in) and platform operators'
 * work. Everything else in the catalogue may be a key's scope.
 */
export function apiKeyMayHold(permission: string): boolean {
  return !permission.endsWith(".self") && !permission.startsWith("identity.operators.") && permission !== "tenancy.tenants.create" && permission !== "tenancy.tenants.list";
}

/**
 * What the `write` scope leaves out besides what only `admin` grants:
 * changing who holds what, removing people, the tenant's policy and
 * lifecycle, destroying or rotating key material, managing API keys
 * themselves, retention and erasure approvals.
 */
const adminOnly: ReadonlySet<string> = new Set([
  "identity.roles.manage",
  "identity.roles.assign",
  "identity.roles.assign_owner",
  "identity.users.delete",
  "identity.users.suspend",
  "identity.users.offboard",
  "identity.mfa.reset",
  "identity.sessions.revoke",
  "tenancy.policies.update",
  "tenancy.tenants.suspend",
  "tenancy.tenants.reactivate",
  "tenancy.tenants.close",
  "keys.api_keys.create",
  "keys.api_keys.update",
  "keys.api_keys.revoke",
  "keys.api_keys.rotate",
  "keys.encryption.rotate",
  "keys.encryption.destroy",
  "audit.retention.manage",
  "compliance.retention.manage",
  "compliance.erasures.approve",
]);

const keyable = permissionCatalogue.map((p) => p.name).filter(apiKeyMayHold);

/**
 * The scope aliases of an API key:
 * - `read`: every `*.read` and `*.list` permission (reading, never changing);
 * - `write`: `read` plus every other permission except the admin-only ones
 *   above (creating and changing the tenant's ordinary resources, encrypting
 *   and decrypting, verifying keys);
 * - `admin`: every permission an API key may hold.
 */
export const apiKeyScopeAliases: Readonly<Record<"read" | "write" | "admin", readonly string[]>> = Object.freeze({
  read: Object.freeze(keyable.filter((p) => p.endsWith(".read") || p.endsWith(".list"))),
  write: Object.freeze(keyable.filter((p) => !adminOnly.has(p))),
  admin: Object.freeze([...keyable]),
});

/**
 * The catalogue permissions a list of scopes stands for, sorted, or the
 * first scope that is neither an alias nor a permission an API key may
 * hold (callers answer INVALID_ARGUMENT naming it).
 */
export function resolveApiKeyScopes(scopes: readonly string[]): { permissions: string[]; invalid?: { index: number; scope: string } } {
  const out = new Set<string>();
  for (const [index, scope] of scopes.entries()) {
    const alias = (apiKeyScopeAliases as Record<string, readonly string[] | undefined>)[scope];
    if (alias !== undefined) {
      for (const p of alias) out.add(p);
    } else if (keyable.includes(scope)) {
      out.add(scope);
    } else {
      return { permissions: [], invalid: { index, scope } };
    }
  }
  return { permissions: [...out].sort() };
}
