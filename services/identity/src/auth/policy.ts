import { Code, ConnectError } from "@connectrpc/connect";
import { MfaRequirement, type TenancyClient } from "@bulwark/contracts";
import { currentContext, runAsService } from "@bulwark/core";

/** The parts of a tenant's security policy that sign-in and tokens obey. */
export interface AuthPolicy {
  readonly passwordMinLength: number;
  /** Access-token lifetime, never longer than the idle timeout (see below). */
  readonly accessTokenLifetimeS: number;
  /** Absolute session lifetime. */
  readonly refreshTokenLifetimeS: number;
  readonly idleTimeoutS: number;
  readonly mfaForEveryone: boolean;
  /** How recent an authentication sensitive self-service changes need. */
  readonly reauthenticationWindowS: number;
}

/**
 * Runs `fn` as identity's service principal inside one tenant, so reading
 * the policy does not depend on the caller's own permissions (a signing-in
 * user has none yet).
 */
export function asIdentityIn<T>(tenantId: string | undefined, fn: () => T): T {
  return runAsService("identity", tenantId, fn);
}

/**
 * The tenant's policy from tenancy (which caches it). Idle time is measured
 * between refreshes — identity does not see calls to other services — so an
 * access token lives at most one idle timeout: a client that keeps working
 * refreshes within it, and a session left alone longer cannot be refreshed.
 */
export async function tenantPolicy(tenancy: Pick<TenancyClient, "getSecurityPolicy">, tenantId: string): Promise<AuthPolicy> {
  const { policy } = await asIdentityIn(tenantId, () => tenancy.getSecurityPolicy({ tenantId }));
  const seconds = (d: { seconds: bigint } | undefined, fallback: number): number => (d === undefined || d.seconds <= 0n ? fallback : Number(d.seconds));
  const idle = seconds(policy?.idleTimeout, 1_800);
  return {
    passwordMinLength: policy?.passwordMinLength ?? 0,
    accessTokenLifetimeS: Math.min(seconds(policy?.accessTokenLifetime, 3_600), idle),
    refreshTokenLifetimeS: seconds(policy?.refreshTokenLifetime, 86_400),
    idleTimeoutS: idle,
    mfaForEveryone: policy?.mfaRequirement === MfaRequirement.EVERYONE,
    reauthenticationWindowS: seconds(policy?.reauthenticationWindow, 900),
  };
}

/** The tenant a slug names, if it exists and accepts sign-ins. */
export async function activeTenantBySlug(tenancy: TenancyClient, slug: string): Promise<string | undefined> {
  try {
    const r = await asIdentityIn(undefined, () => tenancy.resolveTenant({ slug }));
    return r.active ? r.tenantId : undefined;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return undefined;
    throw err;
  }
}

/**
 * The client address of the running call, as the pipeline derived it: the
 * connection's peer, or the client a trusted proxy forwarded for
 * (TRUSTED_PROXIES). The headers are deliberately not read — a forwarding
 * header is the caller's to forge; the parameter stays so callers need not
 * change. Empty when the call has no address (in-process tests).
 */
export function clientAddress(_headers: Headers): string {
  return (currentContext()?.clientIp ?? "").slice(0, 64);
}
