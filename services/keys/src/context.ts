import { createTenancyClient, type TenancyClient } from "@bulwark/contracts";
import { createServiceTransport, type RuntimeDeps } from "@bulwark/server";
import { Envelope } from "./encryption/envelope.js";
import { RotationPeriods } from "./encryption/policy.js";
import { KeyRings } from "./encryption/rings.js";
import { keyProviderFromConfig, type KeyProvider } from "./master/index.js";

/**
 * What the keys service's parts share beyond the runtime: the master key
 * provider, the key rings and the envelope encryption over them (every part
 * encrypts through it), the tenants' rotation periods, and a typed client of
 * tenancy.
 */
export interface KeysContext {
  readonly deps: RuntimeDeps;
  readonly provider: KeyProvider;
  readonly rings: KeyRings;
  readonly envelope: Envelope;
  readonly periods: RotationPeriods;
  readonly tenancy: TenancyClient;
}

const contexts = new WeakMap<RuntimeDeps, KeysContext>();

/** The keys context of one started service (created on first use). */
export function keysContext(deps: RuntimeDeps): KeysContext {
  let ctx = contexts.get(deps);
  if (ctx === undefined) {
    const provider = keyProviderFromConfig(deps.config);
    const rings = new KeyRings({ db: deps.db, provider, events: deps.events, logger: deps.logger.child({ part: "encryption" }), maxKeys: deps.config.KEYS_CACHE_MAX_KEYS, afterCommit: () => deps.relay.nudge() });
    const tenancy = createTenancyClient(createServiceTransport(deps.config.TENANCY_URL, deps.assertions, "tenancy"));
    ctx = { deps, provider, rings, envelope: new Envelope(rings), periods: new RotationPeriods(tenancy, deps.logger), tenancy };
    contexts.set(deps, ctx);
  }
  return ctx;
}
