import type { ServiceModule } from "@bulwark/server";
import { keysContext } from "./context.js";
import { encryptionPart } from "./encryption/part.js";
import { migrations } from "./migrations/index.js";
import type { KeysPart } from "./part.js";
import { secretsPart } from "./secrets/part.js";
import { webhooksPart } from "./webhooks/part.js";
import { apiKeysPart } from "./apikeys/part.js";
import { participantPart } from "./participant/part.js";

/**
 * The parts of the keys service, one per folder: envelope encryption with
 * per-tenant, per-subject and per-service key rings (encryption/, over the
 * master keyring in master/), the credential vault (secrets/) and webhook
 * signing secrets (webhooks/), API keys (apikeys/), and the data-subject
 * participant that compliance calls (participant/).
 */
export const keysParts: readonly KeysPart[] = [encryptionPart, secretsPart, webhooksPart, apiKeysPart, participantPart];

/** The keys service made of `parts` (tests swap a part for one with shorter intervals). */
export function keysModuleOf(parts: readonly KeysPart[]): ServiceModule {
  return {
    name: "keys",
    entities: parts.flatMap((p) => p.entities),
    migrations,
    services: (deps) => {
      const ctx = keysContext(deps);
      return parts.flatMap((p) => p.registrations(ctx));
    },
    consumers: (deps) => parts.flatMap((p) => p.consumers?.(keysContext(deps)) ?? []),
    resolvers: (deps) => parts.flatMap((p) => p.resolvers?.(keysContext(deps)) ?? []),
    onStart: async (deps) => {
      for (const p of parts) await p.start?.(keysContext(deps));
    },
    onStop: async (deps) => {
      for (const p of [...parts].reverse()) await p.stop?.(keysContext(deps));
    },
    jobs: (deps) => parts.flatMap((p) => p.jobs?.(keysContext(deps)) ?? []),
    // API keys are verified in process (apikeys/), not through VerifyApiKey over the network.
    verifiesApiKeys: true,
  };
}

/** The keys service as the runtime starts it. */
export const keysModule: ServiceModule = keysModuleOf(keysParts);
