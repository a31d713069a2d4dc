import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A user's TOTP authenticator: the shared secret sealed by SecretBox
 * (never plaintext), pending until `confirmedAt`, and the last time step
 * accepted, which only moves forward so a code is never accepted twice.
 */
export const TotpCredentialEntity = defineEntity({
  name: "TotpCredential",
  tableName: "totp_credentials",
  properties: (p) => ({
    userId: p.string().primary(),
    tenantId: p.string(),
    secretCiphertext: p.blob(),
    confirmedAt: p.datetime().nullable(),
    lastUsedStep: p.bigint().default(0),
    createdAt: p.datetime(),
  }),
});

/** A loaded TOTP credential row. */
export type TotpCredentialRow = InferEntity<typeof TotpCredentialEntity>;
