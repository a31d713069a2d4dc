import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * An Ed25519 key that signs access tokens. Platform-level (`tenantId` null).
 * A key signs until `retireAfter` and stays published in the JWKS until
 * `expiresAt`, when no token it signed can still be valid.
 *
 * `privateJwk` is stored as plain JWK JSON for now; it is to be envelope-
 * encrypted through the keys service once that exists (a known gap).
 */
export const SigningKeyEntity = defineEntity({
  name: "SigningKey",
  tableName: "signing_keys",
  properties: (p) => ({
    kid: p.string().primary(),
    tenantId: p.string().nullable(),
    privateJwk: p.text(),
    publicJwk: p.text(),
    createdAt: p.datetime(),
    retireAfter: p.datetime(),
    expiresAt: p.datetime(),
  }),
});

/** A loaded signing-key row. */
export type SigningKeyRow = InferEntity<typeof SigningKeyEntity>;
