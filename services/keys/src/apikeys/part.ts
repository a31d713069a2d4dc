import type { MigrationObject } from "@mikro-orm/core";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { ApiKeyService, createTenancyClient, file_bulwark_keys_v1_api_key_service, GrantsReducedSchema, RoleService, UserDeletedSchema, UserSuspendedSchema, type Envelope } from "@bulwark/contracts";
import { bearerToken, grantsReducedSubject, looksLikeApiKey, type Principal } from "@bulwark/core";
import { BackgroundConsumer, createServiceTransport, StreamFollower, streamOf, type ConsumerSpec, type RuntimeDeps } from "@bulwark/server";
import type { KeysPart } from "../part.js";
import { registration } from "../registration.js";
import { ApiKeyServiceImpl, revokeRow } from "./api-key-service.js";
import { ExposureReports } from "./exposure.js";
import { housekeepingJob, KeyHousekeeping } from "./expiry.js";
import { openUsageCapBucket, RateLimiter, UsageCaps, UsageRecorder } from "./limits.js";
import { Migration20261216100000 } from "./Migration20261216100000.js";
import { OwnerPermissions } from "./owners.js";
import { queryRows } from "./rows.js";
import { ApiKeyVerifier } from "./verifier.js";

/** Tunables of the API-key part (tests shorten the intervals). */
export interface ApiKeysOptions {
  /** How often the scheduler runs the expiry warnings and ended rotations (default 60 s). */
  readonly housekeepingIntervalMs?: number;
  /** How often usage counts and last-used times are written (default 2 s). */
  readonly usageFlushIntervalMs?: number;
  /** ReportExposedKeys calls accepted per second per replica (default 10, burst 20). */
  readonly exposureReportsPerSecond?: number;
}

/** One started service's API-key machinery. */
interface ApiKeysState {
  readonly verifier: ApiKeyVerifier;
  readonly owners: OwnerPermissions;
  readonly caps: UsageCaps;
  readonly usage: UsageRecorder;
  readonly exposures: ExposureReports;
  readonly housekeeping: KeyHousekeeping;
  readonly followers: StreamFollower[];
  readonly ownerRevocations: BackgroundConsumer;
}

/** The API-key part's migrations, in order. */
export const apiKeysMigrations: MigrationObject[] = [{ name: "Migration20261216100000", class: Migration20261216100000 }];

/**
 * The API-key part: ApiKeyService, the in-process resolver that lets keys
 * itself accept API keys, the consumer revoking the keys of suspended and
 * deleted users, the housekeeping job, and the followers that keep every
 * replica's caches honest (keys' own key events; identity's reductions,
 * suspensions, deletions and role changes). Entities: none — `api_keys`
 * is read and written with SQL (see rows.ts), as the hot path wants.
 */
export function apiKeysPartWith(options: ApiKeysOptions = {}): KeysPart {
  const states = new WeakMap<RuntimeDeps, ApiKeysState>();
  const stateOf = (deps: RuntimeDeps): ApiKeysState => {
    const s = states.get(deps);
    if (s === undefined) throw new Error("the API-key part was not started");
    return s;
  };
  return {
    name: "apikeys",
    entities: [],
    async start({ deps }) {
      const { config, db, logger } = deps;
      const log = logger.child({ part: "apikeys" });
      const roles = createClient(RoleService, createServiceTransport(config.IDENTITY_URL, deps.assertions, "identity"));
      const owners = new OwnerPermissions(roles);
      const caps = new UsageCaps(await openUsageCapBucket(deps.nc, config.EVENTS_SUBJECT_PREFIX));
      const usage = new UsageRecorder(db, log);
      const verifier = new ApiKeyVerifier({ db, pepper: config.KEYS_API_KEY_PEPPER, owners, caps, rates: new RateLimiter(), usage, tenants: deps.tenantStatus });
      const forget = (keyId: string): void => {
        verifier.forgetKey(keyId);
        deps.relay.nudge();
      };
      const exposures = new ExposureReports({ db, events: deps.events, pepper: config.KEYS_API_KEY_PEPPER, logger: log, revoked: forget, perSecond: options.exposureReportsPerSecond ?? 10 });
      const housekeeping = new KeyHousekeeping({ db, events: deps.events, logger: log, changed: (ids) => ids.forEach(forget) });
      const followers = cacheFollowers(deps, verifier, owners);
      // The caches start empty: nothing to catch up on.
      await Promise.all(followers.map((f) => f.start(0)));
      usage.start(options.usageFlushIntervalMs ?? 2_000);
      // Started in the background: identity's stream may not exist yet (keys can start first).
      const ownerRevocations = new BackgroundConsumer(deps, ownerRevocationsSpec(deps));
      ownerRevocations.start();
      states.set(deps, { verifier, owners, caps, usage, exposures, housekeeping, followers, ownerRevocations });
    },
    async stop({ deps }) {
      const s = states.get(deps);
      if (s === undefined) return;
      await s.ownerRevocations.stop();
      await s.exposures.idle();
      await s.usage.stop();
      await Promise.all(s.followers.map((f) => f.stop()));
    },
    jobs({ deps }) {
      const s = stateOf(deps);
      return [
        {
          name: housekeepingJob,
          everyMs: options.housekeepingIntervalMs ?? 60_000,
          timeoutMs: 60_000,
          runAsPlatform: "API key housekeeping: expiry warnings and ended rotations",
          run: async (ctx) => s.housekeeping.runOnce(ctx.now()),
        },
      ];
    },
    registrations({ deps }) {
      const s = stateOf(deps);
      const impl = new ApiKeyServiceImpl({
        db: deps.db,
        events: deps.events,
        tenancy: createTenancyClient(createServiceTransport(deps.config.TENANCY_URL, deps.assertions, "tenancy")),
        owners: s.owners,
        verifier: s.verifier,
        caps: s.caps,
        exposures: s.exposures,
        pepper: deps.config.KEYS_API_KEY_PEPPER,
        afterCommit: () => deps.relay.nudge(),
        logger: deps.logger.child({ part: "apikeys" }),
      });
      return [registration(ApiKeyService, file_bulwark_keys_v1_api_key_service, impl)];
    },
    resolvers({ deps }) {
      const s = stateOf(deps);
      return [
        {
          async resolve(headers: Headers): Promise<Principal | undefined> {
            const token = bearerToken(headers);
            if (token === undefined || !looksLikeApiKey(token)) return undefined;
            return ApiKeyVerifier.principalOf(await s.verifier.verify(token));
          },
        },
      ];
    },
  };
}

/**
 * The durable consumer that revokes the keys of suspended and deleted users
 * (identity's user.suspended and user.deleted, signed by identity), exactly
 * once per event through the inbox.
 */
function ownerRevocationsSpec(deps: RuntimeDeps): ConsumerSpec {
  const prefix = deps.config.EVENTS_SUBJECT_PREFIX;
  return {
    stream: streamOf(prefix, "identity").name,
    source: "identity",
    durable: "keys_owner_revocations",
    // One filter (older servers take one per consumer); everything but suspensions and deletions is acknowledged unread.
    filterSubjects: [`${prefix}.identity.user.>`],
    relevant: (event) => event.subject.endsWith(".user.suspended") || event.subject.endsWith(".user.deleted"),
    maxDeliver: 10,
    backoffMs: [500, 2_000, 10_000, 60_000],
    async handle(event, em) {
      const suspended = event.subject.endsWith(".suspended");
      const userId = suspended ? (event.envelope.payload === undefined ? undefined : anyUnpack(event.envelope.payload, UserSuspendedSchema)?.user?.id) : event.envelope.payload === undefined ? undefined : anyUnpack(event.envelope.payload, UserDeletedSchema)?.userId;
      if (userId === undefined || userId === "") return;
      // The consumer's transaction runs in the event's tenant: only that tenant's keys are visible.
      const rows = await queryRows(em, "select * from api_keys where owner_id = ? and state = 'active' for update", [userId]);
      const now = new Date();
      for (const r of rows) await revokeRow(em, deps.events, r, suspended ? "owner_suspended" : "owner_deleted", now);
      if (rows.length > 0) setTimeout(() => deps.relay.nudge(), 50).unref();
    },
  };
}

/**
 * Followers that keep this replica's caches in step with the mesh, live
 * from now on (the caches start empty): every key event of any replica
 * drops the key's row; identity's reductions, suspensions and deletions
 * drop the user's permissions, and a role's change drops its tenant's.
 */
function cacheFollowers(deps: RuntimeDeps, verifier: ApiKeyVerifier, owners: OwnerPermissions): StreamFollower[] {
  const prefix = deps.config.EVENTS_SUBJECT_PREFIX;
  const startedAt = new Date();
  const follow = (service: string, subject: string, onEvent: (e: Envelope) => void): StreamFollower =>
    new StreamFollower({ js: deps.js, stream: streamOf(prefix, service).name, subject, source: service, subjectPrefix: prefix, keys: deps.keys, since: () => startedAt, onEvent, logger: deps.logger });
  return [
    follow("keys", `${prefix}.keys.key.>`, (e) => verifier.forgetKey(e.aggregateId)),
    follow("identity", grantsReducedSubject(prefix), (e) => {
      const p = e.payload === undefined ? undefined : anyUnpack(e.payload, GrantsReducedSchema);
      if (p !== undefined) owners.forgetUser(p.userId);
    }),
    follow("identity", `${prefix}.identity.user.suspended`, (e) => owners.forgetUser(e.aggregateId)),
    follow("identity", `${prefix}.identity.user.deleted`, (e) => owners.forgetUser(e.aggregateId)),
    follow("identity", `${prefix}.identity.role.>`, (e) => {
      // role.created/updated/deleted name the role; assigned/revoked/ownership_transferred the user.
      if (e.aggregateId.startsWith("usr_")) owners.forgetUser(e.aggregateId);
      else owners.forgetTenant(e.tenantId);
    }),
  ];
}

/** The API-key part with its default settings. */
export const apiKeysPart: KeysPart = apiKeysPartWith();
