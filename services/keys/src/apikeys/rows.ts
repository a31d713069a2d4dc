import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { EntityManager } from "@bulwark/db";
import { ApiKeySchema, ApiKeyState, Environment, RateLimitSchema, RotationSchema, type ApiKey } from "@bulwark/contracts";

/** An api_keys row as SQL returns it (the columns every read selects). */
export interface ApiKeyRow {
  readonly id: string;
  readonly tenant_id: string;
  readonly name: string;
  readonly environment: "live" | "test";
  readonly owner_id: string;
  readonly scopes: string[];
  readonly granted: string[];
  readonly secret_hash: Buffer;
  readonly metadata: Record<string, string>;
  readonly state: "active" | "revoked";
  readonly created_at: Date;
  readonly updated_at: Date;
  readonly expires_at: Date;
  readonly revoked_at: Date | null;
  readonly revoke_reason: string | null;
  readonly last_used_at: Date | null;
  readonly usage_count: string | number;
  readonly rate_limit: number | null;
  readonly rate_window_ms: number | null;
  readonly usage_limit: string | number | null;
  readonly cap_id: string;
  readonly rotated_from: string | null;
  readonly rotated_to: string | null;
  readonly rotation_deadline: Date | null;
  /** The predecessor's rotation deadline, for a key issued by a rotation. */
  readonly predecessor_deadline?: Date | null;
}

/** The columns of a full read, predecessor's deadline included (`k` is api_keys). */
export const rowColumns = "k.*, (select p.rotation_deadline from api_keys p where p.id = k.rotated_from and p.rotated_to = k.id) as predecessor_deadline";

/** When the key stops verifying: its expiry, or the end of its rotation's overlap if sooner. */
export function endOf(row: Pick<ApiKeyRow, "expires_at" | "rotation_deadline">): Date {
  return row.rotation_deadline !== null && row.rotation_deadline < row.expires_at ? row.rotation_deadline : row.expires_at;
}

/** Where the key is in its life now. */
export function stateOf(row: ApiKeyRow, now = new Date()): ApiKeyState {
  if (row.state === "revoked") return ApiKeyState.REVOKED;
  return endOf(row) <= now ? ApiKeyState.EXPIRED : ApiKeyState.ACTIVE;
}

/** The wire environment of a stored one. */
export function environmentOf(env: "live" | "test"): Environment {
  return env === "live" ? Environment.LIVE : Environment.TEST;
}

/** The non-secret start of the key's text: `bwk_<env>_<key id>`. */
export function prefixOf(row: Pick<ApiKeyRow, "id" | "environment">): string {
  return `bwk_${row.environment}_${row.id.slice("key_".length)}`;
}

/** The wire form of a stored key (never its secret); `remaining` from the usage-cap counter. */
export function apiKeyToProto(row: ApiKeyRow, remaining?: bigint): ApiKey {
  const rotation =
    row.rotated_to !== null && row.rotation_deadline !== null
      ? create(RotationSchema, { otherKeyId: row.rotated_to, oldKeyValidUntil: timestampFromDate(row.rotation_deadline) })
      : row.rotated_from !== null && row.predecessor_deadline !== undefined && row.predecessor_deadline !== null
        ? create(RotationSchema, { otherKeyId: row.rotated_from, oldKeyValidUntil: timestampFromDate(row.predecessor_deadline) })
        : undefined;
  return create(ApiKeySchema, {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    environment: environmentOf(row.environment),
    prefix: prefixOf(row),
    ownerUserId: row.owner_id,
    scopes: [...row.scopes],
    grantedPermissions: [...row.granted],
    metadata: { ...row.metadata },
    state: stateOf(row),
    createTime: timestampFromDate(row.created_at),
    expireTime: timestampFromDate(endOf(row)),
    ...(row.last_used_at !== null ? { lastUsedTime: timestampFromDate(row.last_used_at) } : {}),
    ...(row.revoked_at !== null ? { revokeTime: timestampFromDate(row.revoked_at) } : {}),
    revokeReason: row.revoke_reason ?? "",
    ...(row.rate_limit !== null && row.rate_window_ms !== null
      ? { rateLimit: create(RateLimitSchema, { limit: row.rate_limit, window: { seconds: BigInt(Math.floor(row.rate_window_ms / 1000)), nanos: (row.rate_window_ms % 1000) * 1e6 } }) }
      : {}),
    ...(row.usage_limit !== null ? { remainingUses: remaining ?? 0n } : {}),
    usageCount: BigInt(row.usage_count),
    ...(rotation !== undefined ? { rotation } : {}),
  });
}

const dateColumns = ["created_at", "updated_at", "expires_at", "revoked_at", "last_used_at", "rotation_deadline", "predecessor_deadline", "expiry_warned_at"] as const;

/** Runs SQL returning api_keys rows, with timestamps as Dates (the driver returns them as text). */
export async function queryRows(em: EntityManager, sql: string, params: unknown[] = []): Promise<ApiKeyRow[]> {
  const raw = await em.execute<Record<string, unknown>[]>(sql, params);
  for (const r of raw) {
    for (const c of dateColumns) {
      const v = r[c];
      if (typeof v === "string") r[c] = new Date(v);
    }
  }
  return raw as unknown as ApiKeyRow[];
}
