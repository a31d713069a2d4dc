import { Code, ConnectError } from "@connectrpc/connect";
import type { RoleService } from "@bulwark/contracts";
import { runAsService } from "@bulwark/core";
import type { Client } from "@connectrpc/connect";

/** What a key's creator holds now, as identity says. */
export interface OwnerGrants {
  readonly active: boolean;
  readonly permissions: ReadonlySet<string>;
  readonly epoch: number;
}

/** How long an owner's permissions are remembered without an event saying they changed. */
const ownerTtlMs = 30_000;
const maxOwners = 10_000;

/**
 * The current permissions of API-key creators, read from identity's
 * RoleService.GetUserPermissions (as the keys service inside the owner's
 * tenant) and remembered until identity announces a change — a reduction
 * (`user.grants_reduced`), a suspension or deletion, a role assigned,
 * revoked or edited — or for 30 seconds at most. Concurrent misses for one
 * owner share one call. A user identity does not know holds nothing.
 */
export class OwnerPermissions {
  readonly #roles: Pick<Client<typeof RoleService>, "getUserPermissions">;
  readonly #cache = new Map<string, { grants: OwnerGrants; at: number; tenantId: string }>();
  readonly #inflight = new Map<string, Promise<OwnerGrants>>();
  #generation = 0;

  constructor(roles: Pick<Client<typeof RoleService>, "getUserPermissions">) {
    this.#roles = roles;
  }

  /** The owner's grants; `refresh` skips the cache. UNAVAILABLE when identity cannot answer. */
  async of(tenantId: string, userId: string, refresh = false): Promise<OwnerGrants> {
    const key = `${tenantId}/${userId}`;
    const hit = this.#cache.get(key);
    if (!refresh && hit !== undefined && Date.now() - hit.at < ownerTtlMs) return hit.grants;
    let pending = refresh ? undefined : this.#inflight.get(key);
    if (pending === undefined) {
      const generation = this.#generation;
      pending = this.#fetch(tenantId, userId).then((grants) => {
        if (generation === this.#generation) {
          if (this.#cache.size >= maxOwners) {
            const oldest = this.#cache.keys().next().value;
            if (oldest !== undefined) this.#cache.delete(oldest);
          }
          this.#cache.set(key, { grants, at: Date.now(), tenantId });
        }
        return grants;
      });
      pending = pending.finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  /** Forgets one user (any tenant: user ids are unique). */
  forgetUser(userId: string): void {
    this.#generation++;
    for (const k of this.#cache.keys()) if (k.endsWith(`/${userId}`)) this.#cache.delete(k);
    for (const k of this.#inflight.keys()) if (k.endsWith(`/${userId}`)) this.#inflight.delete(k);
  }

  /** Forgets every user of a tenant (one of its roles changed). */
  forgetTenant(tenantId: string): void {
    this.#generation++;
    for (const [k, v] of this.#cache) if (v.tenantId === tenantId) this.#cache.delete(k);
    for (const k of this.#inflight.keys()) if (k.startsWith(`${tenantId}/`)) this.#inflight.delete(k);
  }

  async #fetch(tenantId: string, userId: string): Promise<OwnerGrants> {
    try {
      const r = await runAsService("keys", tenantId, () => this.#roles.getUserPermissions({ userId }));
      return { active: r.active, permissions: new Set(r.permissions), epoch: Number(r.permissionEpoch) };
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return { active: false, permissions: new Set(), epoch: 0 };
      throw new ConnectError("the owner's permissions cannot be read now; retry", Code.Unavailable, undefined, undefined, err);
    }
  }
}
