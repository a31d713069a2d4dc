import type { ServiceModule } from "@bulwark/server";
import { apiKeysPart, type ApiKeysOptions } from "./apikeys/part.js";
import { migrations } from "./migrations/index.js";

/**
 * The keys service as the runtime starts it, one part per folder: API keys
 * (apikeys/: ApiKeyService, the in-process API-key resolver, the consumer
 * revoking the keys of suspended and deleted users, the expiry warnings).
 * `options` tunes the parts (tests shorten the periodic jobs).
 */
export function keysModuleWith(options: { apiKeys?: ApiKeysOptions } = {}): ServiceModule {
  const parts = [apiKeysPart(options.apiKeys)];
  return {
    name: "keys",
    entities: parts.flatMap((p) => p.entities),
    migrations,
    services: (deps) => parts.flatMap((p) => p.registrations(deps)),
    consumers: (deps) => parts.flatMap((p) => p.consumers(deps)),
    resolvers: (deps) => parts.flatMap((p) => p.resolvers(deps)),
    jobs: (deps) => parts.flatMap((p) => p.jobs(deps)),
    verifiesApiKeys: true,
    onStart: async (deps) => {
      for (const p of parts) await p.onStart(deps);
    },
    onStop: async (deps) => {
      for (const p of parts) await p.onStop(deps);
    },
  };
}

/** The keys service with its default settings. */
export const keysModule: ServiceModule = keysModuleWith();
