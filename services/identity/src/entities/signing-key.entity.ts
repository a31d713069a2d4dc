import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * An Ed25519 key that signs access tokens. Platform-level (`tenantId` null).
 * A key signs until `retireAfter` and stays published in the JWKS until
 * `expiresAt`, when no token it signed can still be valid.
 *
 * The private half is `privateJwkSealed`: encrypted through the keys
 * service (see auth/signing-keys.ts); `privateJwk` is only set on rows from
 * before that, until the background migration moves them.
 */
export const SigningKeyEntity = defineEntity({
  name: "SigningKey",
  tableName: "signing_keys",
  properties: (p) => ({
    kid: p.string().primary(),
    tenantId: p.string().nullable(),
    privateJwk: p.text().nullable(),
    privateJwkSealed: p.blob().nullable(),
    publicJwk: p.text(),
    createdAt: p.datetime(),
    retireAfter: p.datetime(),
    expiresAt: p.datetime(),
  }),
});

/** A loaded signing-key row. */
export type SigningKeyRow = InferEntity<typeof SigningKeyEntity>;
