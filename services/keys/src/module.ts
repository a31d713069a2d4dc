import type { ServiceModule } from "@bulwark/server";
import { keysContext } from "./context.js";
import { encryptionPart } from "./encryption/part.js";
import { migrations } from "./migrations/index.js";
import type { KeysPart } from "./part.js";
import { secretsPart } from "./secrets/part.js";
import { webhooksPart } from "./webhooks/part.js";

/**
 * The parts of the keys service, one per folder: envelope encryption with
 * per-tenant, per-subject and per-service key rings (encryption/, over the
 * master keyring in master/), the credential vault (secrets/) and webhook
 * signing secrets (webhooks/).
 */
export const keysParts: readonly KeysPart[] = [encryptionPart, secretsPart, webhooksPart];

/** The keys service as the runtime starts it. */
export const keysModule: ServiceModule = {
  name: "keys",
  entities: keysParts.flatMap((p) => p.entities),
  migrations,
  services: (deps) => {
    const ctx = keysContext(deps);
    return keysParts.flatMap((p) => p.registrations(ctx));
  },
  consumers: (deps) => keysParts.flatMap((p) => p.consumers?.(keysContext(deps)) ?? []),
  resolvers: (deps) => keysParts.flatMap((p) => p.resolvers?.(keysContext(deps)) ?? []),
  onStart: async (deps) => {
    for (const p of keysParts) await p.start?.(keysContext(deps));
  },
  onStop: async (deps) => {
    for (const p of [...keysParts].reverse()) await p.stop?.(keysContext(deps));
  },
};
