import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ApiKeyCreatedSchema,
  ApiKeyRevokedSchema,
  ApiKeyRotatedSchema,
  ApiKeyRotationRolledBackSchema,
  ApiKeyService,
  ApiKeyState,
  ApiKeyUpdatedSchema,
  Environment,
  type CreateApiKeyRequest,
  type ListApiKeysRequest,
  type ReportExposedKeysRequest,
  type RotateApiKeyRequest,
  type TenancyClient,
  type UpdateApiKeyRequest,
  type VerifyApiKeyRequest,
} from "@bulwark/contracts";
import {
  currentContext,
  decodeCursor,
  encodeCursor,
  failedPrecondition,
  generateApiKey,
  hasPermission,
  invalidArgument,
  isPlatformPrincipal,
  notFound,
  permissionDenied,
  requireRecentAuthenticationWithin,
  resolveApiKeyScopes,
  runAsService,
  type Logger,
} from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import type { ExposureReports } from "./exposure.js";
import type { UsageCaps } from "./limits.js";
import type { OwnerPermissions } from "./owners.js";
import { apiKeyToProto, endOf, rowColumns, stateOf, type ApiKeyRow, queryRows } from "./rows.js";
import { secretHash, type ApiKeyVerifier } from "./verifier.js";

/** What ApiKeyService is built from. */
export interface ApiKeyServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly tenancy: Pick<TenancyClient, "getSecurityPolicy">;
  readonly owners: OwnerPermissions;
  readonly verifier: ApiKeyVerifier;
  readonly caps: UsageCaps;
  readonly exposures: ExposureReports;
  readonly pepper: string;
  readonly afterCommit?: () => void;
  readonly logger: Logger;
  readonly now?: () => Date;
}

const day = 86_400;
/** The policy's default when it names none. */
const defaultMaxLifetimeS = 90 * day;
const defaultOverlapS = day;
/** How long a verifier may cache an answer for a key without limits. */
const verifierCacheMs = 10_000;
const metadataKey = /^[A-Za-z0-9_.:-]{1,64}$/;

/** The tenant of the call, which every RPC but VerifyApiKey and ReportExposedKeys acts in. */
function tenantOfCall(): string {
  const tenantId = currentContext()?.tenantId;
  if (tenantId === undefined) throw failedPrecondition("name the tenant (the bulwark-tenant header) to act inside it");
  return tenantId;
}

/** INVALID_ARGUMENT unless the metadata fits: at most 20 entries, keys 1-64 of [A-Za-z0-9_.:-], values up to 512 characters. */
function checkMetadata(metadata: Record<string, string>): Record<string, string> {
  const entries = Object.entries(metadata);
  if (entries.length > 20) throw invalidArgument("metadata", "must have at most 20 entries");
  for (const [k, v] of entries) {
    if (!metadataKey.test(k)) throw invalidArgument("metadata", `key "${k.slice(0, 64)}" must be 1-64 characters of letters, digits and _.:-`);
    if ([...v].length > 512) throw invalidArgument(`metadata[${k}]`, "must be at most 512 characters");
    if (!v.isWellFormed()) throw invalidArgument(`metadata[${k}]`, "is not valid UTF-8");
  }
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed === "") throw invalidArgument("name", "must not be blank");
  return trimmed;
}

function durationMs(d: { seconds: bigint; nanos: number } | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/**
 * bulwark.keys.v1.ApiKeyService. Keys live in `api_keys` under row-level
 * security; VerifyApiKey and ReportExposedKeys, which cannot know the
 * tenant before they have found the key, read it in the platform scope.
 * Changing or rotating a key needs the caller to be its owner or to hold
 * every permission it was granted, so nobody gains a key more privileged
 * than themselves; revoking needs only the permission (it only takes away).
 */
export class ApiKeyServiceImpl implements ServiceImpl<typeof ApiKeyService> {
  readonly #d: ApiKeyServiceDeps;
  readonly #now: () => Date;

  constructor(deps: ApiKeyServiceDeps) {
    this.#d = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  async createApiKey(req: CreateApiKeyRequest) {
    const tenantId = tenantOfCall();
    const principal = currentContext()?.principal;
    if (principal?.kind !== "user" || principal.tenantId !== tenantId) throw failedPrecondition("API keys are created by a tenant's users, signed in");
    const name = checkName(req.name);
    const resolved = resolveApiKeyScopes(req.scopes);
    if (resolved.invalid !== undefined) throw invalidArgument(`scopes[${resolved.invalid.index}]`, `"${resolved.invalid.scope.slice(0, 100)}" is neither read, write, admin nor a permission an API key may hold`);
    const metadata = checkMetadata(req.metadata);
    const rate = req.rateLimit;
    if (rate !== undefined && rate.limit === 0) throw invalidArgument("rate_limit.limit", "is required");
    const policy = await this.#policy(tenantId);
    await requireRecentAuthenticationWithin(async () => policy.reauthenticationWindowS, "creating an API key");
    const lifetimeS = req.lifetime === undefined ? policy.maxLifetimeS : Number(req.lifetime.seconds);
    if (lifetimeS > policy.maxLifetimeS) throw invalidArgument("lifetime", `must be at most the tenant policy's api_key_max_lifetime (${policy.maxLifetimeS}s)`);
    // A key never holds more than its creator: its ceiling is what they hold now.
    const creator = await this.#d.owners.of(tenantId, principal.id, true);
    if (!creator.active) throw failedPrecondition("the creator is not an active user");
    const granted = resolved.permissions.filter((p) => creator.permissions.has(p));
    if (granted.length === 0) throw failedPrecondition("the creator holds none of the permissions the scopes name");
    const now = this.#now();
    const { key, parsed } = generateApiKey(req.environment === Environment.LIVE ? "live" : "test");
    const row = await this.#write(async (em) => {
      const inserted = await queryRows(em, 
        `insert into api_keys (id, tenant_id, name, environment, owner_id, scopes, granted, secret_hash, metadata, state, created_at, updated_at, expires_at, rate_limit, rate_window_ms, usage_limit, cap_id)
         values (?, ?, ?, ?, ?, ?::text[], ?::text[], ?, ?::jsonb, 'active', ?, ?, ?, ?, ?, ?, ?) returning *`,
        [
          parsed.id,
          tenantId,
          name,
          parsed.environment,
          principal.id,
          pgArray(req.scopes),
          pgArray(granted),
          secretHash(this.#d.pepper, parsed.secret),
          JSON.stringify(metadata),
          now,
          now,
          new Date(now.getTime() + lifetimeS * 1000),
          rate?.limit ?? null,
          rate === undefined ? null : durationMs(rate.window),
          req.usageLimit === undefined ? null : String(req.usageLimit),
          parsed.id,
        ],
      );
      const r = inserted[0]!;
      await this.#d.events.publish(em, { aggregate: "key", verb: "created", aggregateId: r.id, schema: ApiKeyCreatedSchema, payload: create(ApiKeyCreatedSchema, { key: apiKeyToProto(r, req.usageLimit) }) });
      return r;
    });
    if (req.usageLimit !== undefined) await this.#d.caps.init(row.cap_id, req.usageLimit);
    return { key: apiKeyToProto(row, req.usageLimit), token: key };
  }

  async getApiKey(req: { keyId: string }) {
    tenantOfCall();
    const row = await this.#d.db.transaction((em) => this.#load(em, req.keyId));
    return { key: await this.#proto(row) };
  }

  async listApiKeys(req: ListApiKeysRequest) {
    tenantOfCall();
    const size = req.pageSize === 0 ? 50 : req.pageSize;
    const filter = JSON.stringify({ o: req.ownerUserId, i: req.includeInactive });
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, filter, "key_");
    const where: string[] = [];
    const params: unknown[] = [];
    if (req.ownerUserId !== "") {
      where.push("k.owner_id = ?");
      params.push(req.ownerUserId);
    }
    if (!req.includeInactive) where.push("k.state = 'active' and k.expires_at > now() and (k.rotation_deadline is null or k.rotation_deadline > now())");
    if (cursor !== undefined) {
      where.push("(k.created_at, k.id) < (?, ?)");
      params.push(cursor.createdAt, cursor.id);
    }
    const rows = await this.#d.db.transaction((em) =>
      queryRows(em, `select ${rowColumns} from api_keys k ${where.length > 0 ? `where ${where.join(" and ")}` : ""} order by k.created_at desc, k.id desc limit ?`, [...params, size + 1]),
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      keys: await Promise.all(page.map((r) => this.#proto(r))),
      nextPageToken: rows.length > size && last !== undefined ? encodeCursor({ createdAt: last.created_at, id: last.id, filter }) : "",
    };
  }

  async updateApiKey(req: UpdateApiKeyRequest) {
    tenantOfCall();
    const paths = [...new Set(req.updateMask?.paths ?? [])];
    for (const p of paths) if (p !== "name" && p !== "metadata") throw invalidArgument("update_mask", `"${p.slice(0, 64)}" is not an updatable API key field`);
    const name = paths.includes("name") ? checkName(req.name) : undefined;
    const metadata = paths.includes("metadata") ? checkMetadata(req.metadata) : undefined;
    const row = await this.#write(async (em) => {
      const r = await this.#load(em, req.keyId, true);
      if (r.state === "revoked") throw failedPrecondition("the key is revoked");
      this.#refuseMorePrivileged(r);
      const changed = [...(name !== undefined && name !== r.name ? ["name"] : []), ...(metadata !== undefined && JSON.stringify(metadata) !== JSON.stringify(r.metadata) ? ["metadata"] : [])];
      if (changed.length === 0) return r;
      const updated = (
        await queryRows(em, `update api_keys set name = ?, metadata = ?::jsonb, updated_at = ? where id = ? returning *`, [name ?? r.name, JSON.stringify(metadata ?? r.metadata), this.#now(), r.id])
      )[0]!;
      await this.#d.events.publish(em, { aggregate: "key", verb: "updated", aggregateId: r.id, schema: ApiKeyUpdatedSchema, payload: create(ApiKeyUpdatedSchema, { key: apiKeyToProto(updated), changedFields: changed }) });
      return updated;
    });
    this.#d.verifier.forgetKey(row.id);
    return { key: await this.#proto(row) };
  }

  async revokeApiKey(req: { keyId: string }) {
    tenantOfCall();
    const row = await this.#write(async (em) => {
      const r = await this.#load(em, req.keyId, true);
      if (r.state === "revoked") return r;
      return revokeRow(em, this.#d.events, r, "revoked", this.#now());
    });
    this.#d.verifier.forgetKey(row.id);
    return { key: await this.#proto(row) };
  }

  async rotateApiKey(req: RotateApiKeyRequest) {
    const tenantId = tenantOfCall();
    const overlapMs = durationMs(req.overlap) ?? defaultOverlapS * 1000;
    const policy = await this.#policy(tenantId);
    const now = this.#now();
    let key = "";
    const { old, next } = await this.#write(async (em) => {
      const r = await this.#load(em, req.keyId, true);
      if (stateOf(r, now) !== ApiKeyState.ACTIVE) throw failedPrecondition("the key is revoked or expired");
      if (r.rotated_to !== null && r.rotation_deadline !== null) throw failedPrecondition("the key is already being rotated; roll the rotation back or wait for its deadline");
      this.#refuseMorePrivileged(r);
      const generated = generateApiKey(r.environment);
      key = generated.key;
      // The successor lives as long as the original was given, within today's policy.
      const lifetimeMs = Math.min(r.expires_at.getTime() - r.created_at.getTime(), policy.maxLifetimeS * 1000);
      const deadline = new Date(Math.min(now.getTime() + overlapMs, r.expires_at.getTime()));
      const successor = (
        await queryRows(em, 
          `insert into api_keys (id, tenant_id, name, environment, owner_id, scopes, granted, secret_hash, metadata, state, created_at, updated_at, expires_at, rate_limit, rate_window_ms, usage_limit, cap_id, rotated_from)
           select ?, tenant_id, name, environment, owner_id, scopes, granted, ?, metadata, 'active', ?, ?, ?, rate_limit, rate_window_ms, usage_limit, cap_id, id from api_keys where id = ? returning *`,
          [generated.parsed.id, secretHash(this.#d.pepper, generated.parsed.secret), now, now, new Date(now.getTime() + lifetimeMs), r.id],
        )
      )[0]!;
      const rotated = (await queryRows(em, "update api_keys set rotated_to = ?, rotation_deadline = ?, updated_at = ? where id = ? returning *", [successor.id, deadline, now, r.id]))[0]!;
      await this.#d.events.publish(em, {
        aggregate: "key",
        verb: "rotated",
        aggregateId: r.id,
        schema: ApiKeyRotatedSchema,
        payload: create(ApiKeyRotatedSchema, { oldKeyId: r.id, newKeyId: successor.id, oldKeyValidUntil: timestampFromDate(deadline), ownerUserId: r.owner_id }),
      });
      await this.#d.events.publish(em, { aggregate: "key", verb: "created", aggregateId: successor.id, schema: ApiKeyCreatedSchema, payload: create(ApiKeyCreatedSchema, { key: apiKeyToProto(successor) }) });
      return { old: rotated, next: { ...successor, predecessor_deadline: deadline } };
    });
    this.#d.verifier.forgetKey(old.id);
    return { key: await this.#proto(next), token: key, previous: await this.#proto(old) };
  }

  async rollbackApiKeyRotation(req: { keyId: string }) {
    tenantOfCall();
    const now = this.#now();
    const { row, successor } = await this.#write(async (em) => {
      const r = await this.#load(em, req.keyId, true);
      if (r.rotated_to === null || r.rotation_deadline === null) throw failedPrecondition("the key is not being rotated");
      if (r.rotation_deadline <= now || r.state === "revoked") throw failedPrecondition("the rotation's deadline has passed; it can no longer be rolled back");
      this.#refuseMorePrivileged(r);
      const next = (await queryRows(em, "select * from api_keys where id = ? for update", [r.rotated_to]))[0];
      if (next !== undefined && next.state === "active") await revokeRow(em, this.#d.events, next, "rotation_rolled_back", now);
      const restored = (await queryRows(em, "update api_keys set rotated_to = null, rotation_deadline = null, updated_at = ? where id = ? returning *", [now, r.id]))[0]!;
      await this.#d.events.publish(em, {
        aggregate: "key",
        verb: "rotation_rolled_back",
        aggregateId: r.id,
        schema: ApiKeyRotationRolledBackSchema,
        payload: create(ApiKeyRotationRolledBackSchema, { keyId: r.id, revokedKeyId: r.rotated_to }),
      });
      return { row: restored, successor: r.rotated_to };
    });
    this.#d.verifier.forgetKey(row.id);
    this.#d.verifier.forgetKey(successor);
    return { key: await this.#proto(row) };
  }

  async verifyApiKey(req: VerifyApiKeyRequest) {
    const principal = currentContext()?.principal;
    // A service verifies any tenant's keys; a tenant's own principal only its tenant's.
    const tenantId = principal === undefined || principal.kind === "service" || isPlatformPrincipal(principal) ? undefined : principal.tenantId;
    const v = await this.#d.verifier.verify(req.token, { refreshPermissions: req.refreshPermissions, tenantId });
    return {
      tenantId: v.row.tenant_id,
      keyId: v.row.id,
      ownerUserId: v.row.owner_id,
      permissions: v.permissions,
      metadata: { ...v.row.metadata },
      environment: v.row.environment === "live" ? Environment.LIVE : Environment.TEST,
      expireTime: timestampFromDate(endOf(v.row)),
      ownerPermissionEpoch: BigInt(v.ownerEpoch),
      cacheFor: durationFromMs(v.limited ? 0 : verifierCacheMs),
      ...(v.remaining !== undefined ? { remainingUses: v.remaining } : {}),
    };
  }

  async reportExposedKeys(req: ReportExposedKeysRequest) {
    this.#d.exposures.report(req.keys.map((k) => ({ token: k.token, url: k.url, source: k.source })));
    return { received: req.keys.length };
  }

  /** The tenant policy's API-key limits and step-up window, read as keys. */
  async #policy(tenantId: string): Promise<{ maxLifetimeS: number; reauthenticationWindowS: number }> {
    const { policy } = await runAsService("keys", tenantId, () => this.#d.tenancy.getSecurityPolicy({ tenantId }));
    const s = (d: { seconds: bigint } | undefined, fallback: number): number => (d === undefined || d.seconds <= 0n ? fallback : Number(d.seconds));
    return { maxLifetimeS: s(policy?.apiKeyMaxLifetime, defaultMaxLifetimeS), reauthenticationWindowS: s(policy?.reauthenticationWindow, 900) };
  }

  /** PERMISSION_DENIED unless the caller owns the key or holds every permission it was granted. */
  #refuseMorePrivileged(row: ApiKeyRow): void {
    const principal = currentContext()?.principal;
    if (principal === undefined) throw permissionDenied();
    if (principal.kind === "user" && principal.id === row.owner_id) return;
    const missing = row.granted.find((p) => !hasPermission(principal, p));
    if (missing !== undefined) throw permissionDenied("the key holds permissions the caller lacks");
  }

  async #load(em: EntityManager, keyId: string, lock = false): Promise<ApiKeyRow> {
    const row = (await queryRows(em, `select ${rowColumns} from api_keys k where k.id = ?${lock ? " for update of k" : ""}`, [keyId]))[0];
    if (row === undefined) throw notFound(`API key "${keyId.slice(0, 64)}"`);
    return row;
  }

  async #proto(row: ApiKeyRow) {
    const remaining = row.usage_limit === null ? undefined : await this.#d.caps.peek(row.cap_id).catch(() => undefined);
    return apiKeyToProto(row, remaining);
  }

  async #write<T>(fn: (em: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.#d.db.transaction(fn);
    this.#d.afterCommit?.();
    return result;
  }
}

/** A Postgres array literal of plain tokens (ids, permission names, scopes: no quotes or commas). */
export function pgArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, "")}"`).join(",")}}`;
}

/** Inside the caller's transaction: revokes a key and records key.revoked. */
export async function revokeRow(em: EntityManager, events: EventPublisher, row: ApiKeyRow, reason: string, now: Date): Promise<ApiKeyRow> {
  const revoked = (await queryRows(em, "update api_keys set state = 'revoked', revoked_at = ?, revoke_reason = ?, updated_at = ? where id = ? returning *", [now, reason, now, row.id]))[0]!;
  await events.publish(em, { aggregate: "key", verb: "revoked", aggregateId: row.id, schema: ApiKeyRevokedSchema, payload: create(ApiKeyRevokedSchema, { keyId: row.id, ownerUserId: row.owner_id, reason }) });
  return { ...revoked, predecessor_deadline: row.predecessor_deadline ?? null };
}
