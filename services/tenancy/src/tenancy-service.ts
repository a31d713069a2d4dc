import { LockMode } from "@mikro-orm/core";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  decodeCursor,
  encodeCursor,
  failedPrecondition,
  aborted,
  invalidArgument,
  newId,
  notFound,
  alreadyExists,
  currentContext,
  isPlatformPrincipal,
  runAsPlatform,
  runForTenant,
  runInTenant,
} from "@bulwark/core";
import {
  Plan,
  SecurityPolicyChangedSchema,
  TenancyService,
  TenantClosingSchema,
  TenantCreatedSchema,
  TenantReactivatedSchema,
  TenantState,
  TenantSuspendedSchema,
  TenantUpdatedSchema,
  type CreateTenantRequest,
  type ListTenantsRequest,
  type UpdateSecurityPolicyRequest,
  type UpdateTenantRequest,
} from "@bulwark/contracts";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { SecurityPolicyEntity } from "./entities/security-policy.entity.js";
import { TenantEntity, type Tenant } from "./entities/tenant.entity.js";
import { applyPolicyMask, defaultPolicyRow, policyToProto } from "./policy.js";
import { TenantCache } from "./tenant-cache.js";
import { stored, tenantToProto } from "./tenant-mapper.js";

/**
 * Whether the caller may see a tenant without asking the database: platform
 * principals see every tenant, a tenant principal only its own — the same
 * answer row-level security gives, applied before a cache read.
 */
function visibleToCaller(tenantId: string): boolean {
  const ctx = currentContext();
  const p = ctx?.principal;
  if (p === undefined) return false;
  return isPlatformPrincipal(p) ? true : ctx?.tenantId === tenantId;
}

/**
 * Serialises CreateTenant and a purge on one slug for the rest of the
 * transaction (a transaction-scoped advisory lock), so a create either
 * meets the tenant's row (ALREADY_EXISTS by the unique index) or, once the
 * purge commits, its tombstone in retired_slugs.
 */
export async function lockSlug(em: EntityManager, slug: string): Promise<void> {
  await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`tenancy.slug:${slug}`]);
}

/** How long a closing tenant's data is kept before compliance erases it. */
export const closeGracePeriodMs = 30 * 86_400_000;

/** What the tenancy service needs. */
export interface TenancyDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  /** Called after a commit that wrote events, to publish them at once. */
  readonly afterCommit?: () => void;
  readonly now?: () => Date;
  /** Read-through cache of tenants and policies; evicted on every change. */
  readonly cache?: TenantCache;
}

const active = stored.state(TenantState.ACTIVE);
const suspended = stored.state(TenantState.SUSPENDED);
const closing = stored.state(TenantState.CLOSING);

/**
 * bulwark.tenancy.v1.TenancyService: tenants, their lifecycle and their
 * security policy. Requests arrive validated and authorized; every query
 * runs under row-level security for the tenant in scope.
 */
export class TenancyServiceImpl implements ServiceImpl<typeof TenancyService> {
  readonly #db: Database;
  readonly #events: EventPublisher;
  readonly #afterCommit: () => void;
  readonly #now: () => Date;
  readonly #cache: TenantCache;

  constructor(deps: TenancyDeps) {
    this.#cache = deps.cache ?? new TenantCache();
    this.#db = deps.db;
    this.#events = deps.events;
    this.#afterCommit = deps.afterCommit ?? (() => undefined);
    this.#now = deps.now ?? (() => new Date());
  }

  async createTenant(req: CreateTenantRequest) {
    const id = newId("ten");
    const now = this.#now();
    const tenant = await runInTenant(id, () =>
      this.#write(id, async (em) => {
        const row = em.create(TenantEntity, {
          id,
          tenantId: id,
          slug: req.slug,
          displayName: req.displayName,
          region: stored.region(req.region),
          plan: stored.plan(req.plan === Plan.UNSPECIFIED ? Plan.FREE : req.plan),
          state: active,
          stateReason: "",
          createdAt: now,
          updatedAt: now,
          closedAt: null,
          purgeAt: null,
        });
        // A purged tenant's slug is retired, not freed (unique forever).
        await lockSlug(em, req.slug);
        if ((await em.execute<{ slug: string }[]>("select slug from retired_slugs where slug = ?", [req.slug])).length > 0) throw alreadyExists(`tenant with slug "${req.slug}"`);
        try {
          await em.flush();
        } catch (err) {
          if (err instanceof Error && err.constructor.name === "UniqueConstraintViolationException") throw alreadyExists(`tenant with slug "${req.slug}"`);
          throw err;
        }
        em.create(SecurityPolicyEntity, defaultPolicyRow(id, now));
        await em.flush();
        const message = tenantToProto(row);
        await this.#events.publish(em, { aggregate: "tenant", verb: "created", aggregateId: id, schema: TenantCreatedSchema, payload: { $typeName: TenantCreatedSchema.typeName, tenant: message } });
        return message;
      }),
    );
    return { tenant };
  }

  async getTenant(req: { tenantId: string }) {
    const visible = visibleToCaller(req.tenantId);
    const cached = visible ? this.#cache.tenant(req.tenantId) : undefined;
    if (cached !== undefined) return { tenant: cached };
    const generation = this.#cache.generation(req.tenantId);
    const tenant = tenantToProto(await runForTenant(req.tenantId, () => this.#db.transaction((em) => this.#load(em, req.tenantId))));
    if (visible) this.#cache.putTenant(tenant, generation);
    return { tenant };
  }

  async resolveTenant(req: { slug: string }) {
    const cached = this.#cache.slug(req.slug);
    if (cached !== undefined) return cached;
    const epoch = this.#cache.epoch();
    const row = await runAsPlatform("resolve a tenant slug for sign-in", () =>
      this.#db.transaction((em) => em.findOne(TenantEntity, { slug: req.slug }, { fields: ["id", "state"] })),
    );
    if (row === null) throw notFound("tenant");
    const result = { tenantId: row.id, active: row.state === active };
    this.#cache.putSlug(req.slug, result, epoch);
    return result;
  }

  async listTenants(req: ListTenantsRequest) {
    const pageSize = req.pageSize === 0 ? 50 : req.pageSize;
    const filter = `${req.state}:${req.region}`;
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, filter, "ten_");
    const rows = await runAsPlatform("operator lists tenants", () =>
      this.#db.transaction((em) =>
        em.find(
          TenantEntity,
          {
            ...(req.state !== TenantState.UNSPECIFIED ? { state: stored.state(req.state) } : {}),
            ...(req.region !== 0 ? { region: stored.region(req.region) } : {}),
            ...(cursor ? { $or: [{ createdAt: { $lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { $lt: cursor.id } }] } : {}),
          },
          { orderBy: [{ createdAt: "desc" }, { id: "desc" }], limit: pageSize + 1 },
        ),
      ),
    );
    const page = rows.slice(0, pageSize);
    const last = page.at(-1);
    const nextPageToken = rows.length > pageSize && last !== undefined ? encodeCursor({ createdAt: last.createdAt, id: last.id, filter }) : "";
    return { tenants: page.map(tenantToProto), nextPageToken };
  }

  async updateTenant(req: UpdateTenantRequest) {
    const paths = req.updateMask?.paths ?? [];
    const tenant = await this.#change(req.tenantId, async (em, t) => {
      if (t.state === closing) throw failedPrecondition("the tenant is closing");
      const changed: string[] = [];
      for (const path of new Set(paths)) {
        if (path === "display_name") {
          if (req.displayName === "") throw invalidArgument("display_name", "is required when named in update_mask");
          if (t.displayName !== req.displayName) changed.push(path);
          t.displayName = req.displayName;
        } else if (path === "plan") {
          if (req.plan === Plan.UNSPECIFIED) throw invalidArgument("plan", "is required when named in update_mask");
          if (t.plan !== stored.plan(req.plan)) changed.push(path);
          t.plan = stored.plan(req.plan);
        } else {
          throw invalidArgument("update_mask", `"${path.slice(0, 64)}" is not an updatable tenant field`);
        }
      }
      if (changed.length === 0) return false;
      await this.#events.publish(em, { aggregate: "tenant", verb: "updated", aggregateId: t.id, schema: TenantUpdatedSchema, payload: { $typeName: TenantUpdatedSchema.typeName, tenant: tenantToProto(t), changedFields: changed } });
      return true;
    });
    return { tenant };
  }

  async suspendTenant(req: { tenantId: string; reason: string }) {
    const tenant = await this.#change(req.tenantId, async (em, t) => {
      if (t.state === suspended) throw failedPrecondition("the tenant is already suspended");
      if (t.state === closing) throw failedPrecondition("the tenant is closing");
      t.state = suspended;
      t.stateReason = req.reason;
      await this.#events.publish(em, { aggregate: "tenant", verb: "suspended", aggregateId: t.id, schema: TenantSuspendedSchema, payload: { $typeName: TenantSuspendedSchema.typeName, tenant: tenantToProto(t) } });
      return true;
    });
    return { tenant };
  }

  async reactivateTenant(req: { tenantId: string }) {
    const tenant = await this.#change(req.tenantId, async (em, t) => {
      if (t.state === active) throw failedPrecondition("the tenant is already active");
      if (t.state === closing && t.purgeAt instanceof Date && t.purgeAt <= this.#now()) throw failedPrecondition("the closure's grace period has ended");
      t.state = active;
      t.stateReason = "";
      t.closedAt = null;
      t.purgeAt = null;
      await this.#events.publish(em, { aggregate: "tenant", verb: "reactivated", aggregateId: t.id, schema: TenantReactivatedSchema, payload: { $typeName: TenantReactivatedSchema.typeName, tenant: tenantToProto(t) } });
      return true;
    });
    return { tenant };
  }

  async closeTenant(req: { tenantId: string; reason: string }) {
    const tenant = await this.#change(req.tenantId, async (em, t) => {
      if (t.state === closing) throw failedPrecondition("the tenant is already closing");
      const now = this.#now();
      t.state = closing;
      t.stateReason = req.reason;
      t.closedAt = now;
      t.purgeAt = new Date(now.getTime() + closeGracePeriodMs);
      await this.#events.publish(em, { aggregate: "tenant", verb: "closing", aggregateId: t.id, schema: TenantClosingSchema, payload: { $typeName: TenantClosingSchema.typeName, tenant: tenantToProto(t) } });
      return true;
    });
    return { tenant };
  }

  async getSecurityPolicy(req: { tenantId: string }) {
    const visible = visibleToCaller(req.tenantId);
    const cached = visible ? this.#cache.policy(req.tenantId) : undefined;
    if (cached !== undefined) return { policy: cached };
    const generation = this.#cache.generation(req.tenantId);
    const row = await runForTenant(req.tenantId, () => this.#db.transaction((em) => em.findOne(SecurityPolicyEntity, { tenantId: req.tenantId })));
    if (row === null) throw notFound("tenant");
    const policy = policyToProto(row);
    if (visible) this.#cache.putPolicy(policy, generation);
    return { policy };
  }

  async updateSecurityPolicy(req: UpdateSecurityPolicyRequest) {
    const policy = await runForTenant(req.tenantId, () =>
      this.#write(req.tenantId, async (em) => {
        const tenant = await this.#load(em, req.tenantId);
        if (tenant.state === closing) throw failedPrecondition("the tenant is closing");
        const row = await em.findOne(SecurityPolicyEntity, { tenantId: req.tenantId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        if (row === null) throw notFound("tenant");
        if (req.expectedRevision !== 0n && BigInt(row.revision) !== req.expectedRevision) throw aborted(`the policy is at revision ${row.revision}, not ${req.expectedRevision}`);
        const changed = applyPolicyMask(row, req.policy!, req.updateMask?.paths ?? []);
        if (changed.length > 0) {
          row.revision += 1;
          row.updatedAt = this.#now();
          await em.flush();
          await this.#events.publish(em, { aggregate: "tenant", verb: "policy_changed", aggregateId: req.tenantId, schema: SecurityPolicyChangedSchema, payload: { $typeName: SecurityPolicyChangedSchema.typeName, policy: policyToProto(row), changedFields: changed } });
        }
        return policyToProto(row);
      }),
    );
    return { policy };
  }

  /** Loads the tenant in scope for update, applies `mutate`, bumps update time. */
  async #change(tenantId: string, mutate: (em: EntityManager, t: Tenant) => Promise<boolean>) {
    return runForTenant(tenantId, () =>
      this.#write(tenantId, async (em) => {
        const t = await this.#load(em, tenantId, true);
        if (await mutate(em, t)) {
          t.updatedAt = this.#now();
          await em.flush();
        }
        return tenantToProto(t);
      }),
    );
  }

  async #load(em: EntityManager, tenantId: string, forUpdate = false): Promise<Tenant> {
    const t = await em.findOne(TenantEntity, { id: tenantId }, forUpdate ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {});
    if (t === null) throw notFound("tenant");
    return t;
  }

  /** A write transaction on one tenant; evicts it from the cache after commit (or failure). */
  async #write<T>(tenantId: string, fn: (em: EntityManager) => Promise<T>): Promise<T> {
    try {
      const result = await this.#db.transaction(fn);
      this.#afterCommit();
      return result;
    } finally {
      this.#cache.evict(tenantId);
    }
  }
}

