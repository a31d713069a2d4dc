import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { KeyState, UserState } from "@bulwark/contracts";
import { describeError, type Logger } from "@bulwark/core";
import type { ComplianceContext } from "../context.js";
import { lastReviewedGrants } from "../reviews/store.js";
import type { ApiKeyFact, FactSource, KeyRingFact, PostureFacts, RoleFact, SessionFact, UserFact } from "./facts.js";
import { asCompliance, evidenceClients } from "./mesh.js";

const stateOf: Partial<Record<UserState, UserFact["state"]>> = { [UserState.INVITED]: "invited", [UserState.ACTIVE]: "active", [UserState.SUSPENDED]: "suspended" };

/**
 * Takes one snapshot of a tenant's facts from the services that own them,
 * as compliance in that tenant: identity (users with roles, MFA and last
 * sign-in, roles, live sessions), keys (active API keys, the tenant's key
 * ring, read without creating it), tenancy (the audit retention of the
 * policy) and compliance's own closed access reviews. The sources are read
 * in parallel; one that fails is named in `unavailable` (its controls
 * become ERROR) instead of failing the whole evaluation.
 */
export async function collectFacts(ctx: ComplianceContext, tenantId: string, logger: Logger): Promise<PostureFacts> {
  const now = ctx.clock();
  const { tenancy, apiKeys } = evidenceClients(ctx.deps);
  const unavailable = new Set<FactSource>();
  const guard = async <T>(source: FactSource, fallback: T, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      logger.warn({ tenantId, source, err: describeError(err) }, "a posture source could not be read");
      unavailable.add(source);
      return fallback;
    }
  };
  return asCompliance(tenantId, async () => {
    const [identity, keys, auditRetentionS, adminReviews] = await Promise.all([
      guard("identity", { users: [] as UserFact[], roles: [] as RoleFact[], sessions: [] as SessionFact[] }, async () => {
        const [users, roles, sessions] = await Promise.all([listUsers(ctx), ctx.identity.roles.listRoles({}), listSessions(ctx)]);
        return { users, roles: roles.roles.map((r) => ({ id: r.id, name: r.name, requiresMfa: r.requiresMfa })), sessions };
      }),
      guard("keys", { apiKeys: [] as ApiKeyFact[], keyRing: undefined as KeyRingFact | null | undefined }, async () => {
        // read_only: observing the posture must not create the tenant's ring (NOT_FOUND: it has none yet).
        const readRing = ctx.keys.encryption.getKeyRing({ readOnly: true }).catch((err: unknown) => {
          if (err instanceof ConnectError && err.code === Code.NotFound) return null;
          throw err;
        });
        const [keyList, ring] = await Promise.all([listApiKeys(apiKeys), readRing]);
        const r = ring === null ? null : ring.keyRing;
        const keyRing: KeyRingFact | null | undefined =
          r === null || r === undefined
            ? r
            : {
                keyId: r.keyId,
                destroyed: r.state === KeyState.DESTROYED,
                rotateTime: r.rotateTime !== undefined ? timestampDate(r.rotateTime) : r.createTime !== undefined ? timestampDate(r.createTime) : now,
                rotationPeriodS: Number(r.rotationPeriod?.seconds ?? 0n),
              };
        return { apiKeys: keyList, keyRing };
      }),
      guard("tenancy", undefined as number | undefined, async () => {
        const { policy } = await tenancy.getSecurityPolicy({ tenantId });
        return policy?.auditRetention !== undefined ? Number(policy.auditRetention.seconds) : undefined;
      }),
      guard("reviews", new Map<string, Map<string, Date>>(), () => ctx.deps.db.transaction((em) => lastReviewedGrants(em))),
    ]);
    return { tenantId, now, ...identity, ...keys, auditRetentionS, adminReviews, unavailable };
  });
}

async function listUsers(ctx: ComplianceContext): Promise<UserFact[]> {
  const out: UserFact[] = [];
  let pageToken = "";
  do {
    const page = await ctx.identity.users.listUsers({ pageSize: 500, pageToken });
    for (const u of page.users) {
      out.push({
        id: u.id,
        displayName: u.displayName,
        state: stateOf[u.state] ?? "invited",
        roleIds: u.roleIds,
        mfaEnrolled: u.mfaEnrolled,
        createTime: u.createTime !== undefined ? timestampDate(u.createTime) : new Date(0),
        lastSignInTime: u.lastSignInTime !== undefined ? timestampDate(u.lastSignInTime) : undefined,
        lastActivityTime: u.lastActivityTime !== undefined ? timestampDate(u.lastActivityTime) : undefined,
      });
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}

async function listSessions(ctx: ComplianceContext): Promise<SessionFact[]> {
  const out: SessionFact[] = [];
  let pageToken = "";
  do {
    const page = await ctx.identity.sessions.listTenantSessions({ pageSize: 1000, pageToken });
    for (const s of page.sessions) {
      out.push({ id: s.id, userId: s.userId, createTime: s.createTime !== undefined ? timestampDate(s.createTime) : new Date(0), lastSeenTime: s.lastSeenTime !== undefined ? timestampDate(s.lastSeenTime) : new Date(0) });
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}

async function listApiKeys(client: ReturnType<typeof evidenceClients>["apiKeys"]): Promise<ApiKeyFact[]> {
  const out: ApiKeyFact[] = [];
  let pageToken = "";
  do {
    const page = await client.listApiKeys({ pageSize: 100, pageToken });
    for (const k of page.keys) {
      out.push({
        id: k.id,
        name: k.name,
        ownerUserId: k.ownerUserId,
        createTime: k.createTime !== undefined ? timestampDate(k.createTime) : new Date(0),
        expireTime: k.expireTime !== undefined ? timestampDate(k.expireTime) : undefined,
      });
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}
