import { Code, ConnectError } from "@connectrpc/connect";
import type { TenancyClient } from "@bulwark/contracts";
import { describeError, runAsService, type Logger } from "@bulwark/core";

/** The rotation period of tenants whose policy says nothing, and of service rings: 365 days. */
export const defaultRotationPeriodS = 365 * 86_400;

/**
 * Each tenant's encryption_key_rotation_period, from its security policy
 * in tenancy (asked as the keys service), cached for a minute. A tenant
 * tenancy does not know gets the default; when tenancy cannot be reached
 * the answer is undefined and the caller skips the tenant this round.
 */
export class RotationPeriods {
  readonly #tenancy: TenancyClient;
  readonly #logger: Logger;
  readonly #cache = new Map<string, { seconds: number; at: number }>();

  constructor(tenancy: TenancyClient, logger: Logger) {
    this.#tenancy = tenancy;
    this.#logger = logger;
  }

  /** The period in seconds, or undefined if tenancy is unreachable. */
  async of(tenantId: string | null): Promise<number | undefined> {
    if (tenantId === null) return defaultRotationPeriodS;
    const hit = this.#cache.get(tenantId);
    if (hit !== undefined && Date.now() - hit.at < 60_000) return hit.seconds;
    try {
      const { policy } = await runAsService("keys", tenantId, () => this.#tenancy.getSecurityPolicy({ tenantId }));
      const s = Number(policy?.encryptionKeyRotationPeriod?.seconds ?? 0n);
      const seconds = s > 0 ? s : defaultRotationPeriodS;
      this.#cache.set(tenantId, { seconds, at: Date.now() });
      return seconds;
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) return defaultRotationPeriodS;
      this.#logger.debug({ tenantId, err: describeError(err) }, "cannot read the tenant's rotation period");
      return undefined;
    }
  }

  /** Forgets a tenant's period (its policy changed). */
  forget(tenantId: string): void {
    this.#cache.delete(tenantId);
  }
}
