import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A user's WebAuthn credential: its id as the authenticator knows it, the
 * COSE public key that checks its signatures, and the signature counter
 * seen last (a counter that stops increasing reveals a cloned key).
 */
export const PasskeyEntity = defineEntity({
  name: "Passkey",
  tableName: "passkeys",
  properties: (p) => ({
    id: p.string().primary(),
    tenantId: p.string(),
    userId: p.string(),
    credentialId: p.string().unique(),
    publicKey: p.blob(),
    counter: p.bigint(),
    transports: p.array(),
    name: p.string(),
    createdAt: p.datetime(),
    lastUsedAt: p.datetime().nullable(),
  }),
});

/** A loaded passkey row. */
export type PasskeyRow = InferEntity<typeof PasskeyEntity>;
