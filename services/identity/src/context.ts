import { createKeysClients, createTenancyClient, type TenancyClient } from "@bulwark/contracts";
import { createServiceTransport, type RuntimeDeps } from "@bulwark/server";
import { CachedTenancy } from "./tenancy-cache.js";
import { SecretBox } from "./mfa/secret-box.js";
import { KeysSealer } from "./sealing/keys-sealer.js";

/**
 * What identity's handlers share beyond the runtime: a typed client of the
 * tenancy service (tenant lookup by slug, security policy), calling as
 * identity on behalf of the current principal, with the two reads every
 * sign-in makes cached (CachedTenancy) and evicted by tenancy's events; and
 * the sealer that keeps identity's secrets (TOTP secrets, token-signing
 * keys) encrypted through the keys service.
 */
export interface IdentityContext {
  readonly deps: RuntimeDeps;
  readonly tenancy: TenancyClient;
  readonly sealer: KeysSealer;
}

const contexts = new WeakMap<RuntimeDeps, IdentityContext>();

/** The identity context of one started service (created on first use). */
export function identityContext(deps: RuntimeDeps): IdentityContext {
  let ctx = contexts.get(deps);
  if (ctx === undefined) {
    const cache = new CachedTenancy(createTenancyClient(createServiceTransport(deps.config.TENANCY_URL, deps.assertions, "tenancy")), { ttlMs: deps.config.CACHE_TTL_MS, gate: deps.tenantStatus });
    cache.watch(deps.nc, deps.config.EVENTS_SUBJECT_PREFIX);
    // Events published while disconnected were missed: start afresh on reconnect.
    void (async () => {
      for await (const s of deps.nc.status()) if (s.type === "reconnect") cache.clear();
    })().catch(() => undefined);
    const keys = createKeysClients(createServiceTransport(deps.config.KEYS_URL, deps.assertions, "keys"));
    ctx = { deps, tenancy: cache.client, sealer: new KeysSealer(keys.encryption, new SecretBox(deps.config.BULWARK_SERVICE_SECRET)) };
    contexts.set(deps, ctx);
  }
  return ctx;
}
