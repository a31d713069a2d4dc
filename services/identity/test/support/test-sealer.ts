import type { SigningKeySealer } from "../../src/sealing/keys-sealer.js";

/**
 * A stand-in for the keys service in identity's unit tests of the signing
 * keys (which test rotation and publication, not encryption): it marks the
 * bytes and checks the kid binding. The contract and e2e tests run the real
 * keys service.
 */
export const testSealer: SigningKeySealer = {
  sealSigningKey: async (kid, json) => Buffer.from(`test-sealed:${kid}:${json}`, "utf8"),
  openSigningKey: async (kid, sealed) => {
    const text = Buffer.from(sealed).toString("utf8");
    const prefix = `test-sealed:${kid}:`;
    if (!text.startsWith(prefix)) throw new Error("sealed for another kid");
    return text.slice(prefix.length);
  },
};
