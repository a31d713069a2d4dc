import { createHash, KeyObject, randomBytes, sign } from "node:crypto";
import type { CryptoKey } from "jose";
import { accessTokenAudience, accessTokenIssuer, accessTokenType } from "@bulwark/core";
import type { SigningKeyStore } from "./signing-keys.js";

/** What an access token says about its holder. */
export interface AccessTokenSubject {
  readonly userId: string;
  readonly tenantId: string;
  readonly sessionId: string;
  readonly roles: readonly string[];
  readonly permissions: readonly string[];
  /** The user's permission epoch: raised whenever their permissions shrink, so older tokens stop working. */
  readonly permissionEpoch: number;
  /** When the user last authenticated in this session (sign-in or Reauthenticate). */
  readonly authTime: Date;
}

/** A signed access token and when it expires. */
export interface IssuedAccessToken {
  readonly token: string;
  readonly expiresAt: Date;
}

/**
 * Signs an access token (EdDSA, `typ: at+jwt`, `kid` of the active key)
 * carrying user, tenant, session, roles, effective permissions, the
 * permission epoch and `auth_time` (OpenID Connect's claim: when the user
 * last authenticated, which step-up checks read), for the mesh (`aud`);
 * every service verifies it locally with identity's published keys (with
 * jose).
 */
export async function issueAccessToken(keys: SigningKeyStore, subject: AccessTokenSubject, lifetimeS: number, now = new Date()): Promise<IssuedAccessToken> {
  const key = await keys.active();
  const iat = Math.floor(now.getTime() / 1000);
  const exp = iat + lifetimeS;
  const authTime = Math.floor(subject.authTime.getTime() / 1000);
  const token = signEdDsaJwt(
    key.privateKey,
    { alg: "EdDSA", kid: key.kid, typ: accessTokenType },
    {
      ten: subject.tenantId,
      sid: subject.sessionId,
      roles: [...subject.roles],
      perms: [...subject.permissions],
      pep: subject.permissionEpoch,
      auth_time: authTime,
      iss: accessTokenIssuer,
      aud: accessTokenAudience,
      sub: subject.userId,
      iat,
      exp,
    },
  );
  return { token, expiresAt: new Date(exp * 1000) };
}

const keyObjects = new WeakMap<CryptoKey, KeyObject>();

/**
 * A compact JWS (RFC 7515) of `payload`, signed with an Ed25519 key on the
 * calling thread. Node's WebCrypto (which jose signs with) runs each
 * signature as a job on libuv's thread pool, where it waits behind the
 * argon2 hashes of concurrent sign-ins; an Ed25519 signature takes tens of
 * microseconds, so signing here is both faster and never queued.
 */
export function signEdDsaJwt(privateKey: CryptoKey, header: Readonly<Record<string, unknown>>, payload: Readonly<Record<string, unknown>>): string {
  let keyObject = keyObjects.get(privateKey);
  if (keyObject === undefined) {
    keyObject = KeyObject.from(privateKey as Parameters<typeof KeyObject.from>[0]);
    keyObjects.set(privateKey, keyObject);
  }
  const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}`;
  return `${input}.${sign(null, Buffer.from(input), keyObject).toString("base64url")}`;
}

/** A new opaque secret (refresh, reset or challenge token): 32 random bytes, base64url. */
export function newOpaqueToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The stored form of an opaque token: SHA-256, hex. The tokens carry 256
 * random bits, so a fast hash is enough (nothing to brute-force), and the
 * database never holds a usable token.
 */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
