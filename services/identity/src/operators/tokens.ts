import { SignJWT } from "jose";
import { accessTokenAudience, accessTokenIssuer, accessTokenType, operatorTokenKind } from "@bulwark/core";
import type { SigningKeyStore } from "../auth/signing-keys.js";
import type { IssuedAccessToken } from "../auth/tokens.js";

/** How long an operator's access token lasts (refresh it with RefreshOperatorTokens). */
export const operatorTokenLifetimeS = 3_600;
/** How long an operator session lasts from sign-in; refreshing does not extend it. */
export const operatorSessionLifetimeS = 12 * 3_600;

/**
 * What an operator holds: every permission, as the bootstrap credential
 * does, since operators run the platform (and act inside a tenant with the
 * `bulwark-tenant` header when they must). Platform-only RPCs are open to
 * them because their principal kind is "operator", not because of a
 * permission.
 */
export const operatorPermissions: readonly string[] = ["*"];

/**
 * What an operator without a second factor holds until they enrol one:
 * enrolling TOTP and signing out (the `identity.operators.self` RPCs).
 */
export const operatorEnrollmentOnlyPermissions: readonly string[] = ["identity.operators.self"];

/**
 * Signs an operator's access token with identity's active signing key (the
 * same keys and JWKS as users' tokens, so every service verifies it with no
 * extra wiring). It carries no `ten` claim and `kind: "operator"`, which the
 * verifier maps to a platform principal; `sid` is the operator session, so
 * disabling the operator revokes it mesh-wide.
 */
export async function issueOperatorToken(
  keys: SigningKeyStore,
  operatorId: string,
  sessionId: string,
  now = new Date(),
  lifetimeS = operatorTokenLifetimeS,
  permissions: readonly string[] = operatorPermissions,
): Promise<IssuedAccessToken> {
  const key = await keys.active();
  const iat = Math.floor(now.getTime() / 1000);
  const exp = iat + lifetimeS;
  const token = await new SignJWT({ kind: operatorTokenKind, sid: sessionId, roles: [], perms: [...permissions] })
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ: accessTokenType })
    .setIssuer(accessTokenIssuer)
    .setAudience(accessTokenAudience)
    .setSubject(operatorId)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key.privateKey);
  return { token, expiresAt: new Date(exp * 1000) };
}
