import type { EntitySchema, MigrationObject } from "@mikro-orm/core";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { createClient } from "@connectrpc/connect";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ApiKeyService, AuthService, GrantsReducedSchema, SessionRevokedSchema, UserDeletedSchema, UserSuspendedSchema, type Envelope } from "@bulwark/contracts";
import {
  AccessTokenVerifier,
  BootstrapCredentialResolver,
  CachedJwksSource,
  grantsReducedSubject,
  MeshKeys,
  revocationSubject,
  RevokedSessions,
  ConfigError,
  createLogger,
  describeError,
  initTelemetry,
  loadConfig,
  ServiceAssertions,
  shutdownTelemetry,
  type CredentialResolver,
  type Logger,
  type ServiceConfig,
  type ServiceName,
} from "@bulwark/core";
import { Database, migrate, readRuntimeState, recordRuntimeState } from "@bulwark/db";
import { ensureStream, EventConsumer, EventPublisher, OutboxRelay, streamNameOf, TenantStatusCache, type EventConsumerOptions } from "@bulwark/events";
import { BulwarkServer, type HttpRoute, type ServiceRegistration } from "./server.js";
import { diagnosticsRegistration } from "./diagnostics.js";
import { createServiceTransport } from "./client.js";
import { StreamFollower } from "./follower.js";
import { ApiKeyResolver } from "./api-key-resolver.js";
import { HealthStatus } from "./health.js";
import { CallPipeline } from "./pipeline.js";
import { ClientAddressResolver } from "./client-address.js";
import { RateLimiter } from "./rate-limit.js";
import { metricsPath, ServiceMetrics } from "./metrics.js";
import { Scheduler, type JobSpec } from "./scheduler.js";
import { RefusalReporter } from "./refusals.js";
import * as http from "node:http";

/** Everything a service's handlers and consumers may use. */
export interface RuntimeDeps {
  readonly config: ServiceConfig;
  readonly logger: Logger;
  readonly db: Database;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly events: EventPublisher;
  readonly relay: OutboxRelay;
  readonly tenantStatus: TenantStatusCache;
  /** This service's signing key and the mesh's public keys. */
  readonly keys: MeshKeys;
  readonly assertions: ServiceAssertions;
  /** Sessions revoked and permissions reduced mesh-wide, followed durably from identity's stream. */
  readonly revokedSessions: RevokedSessions;
  /** The service's Prometheus metrics: hooks for caches (`metrics.cache`) and gauges of its own (`metrics.gauge`). */
  readonly metrics: ServiceMetrics;
}

/** A consumer a service runs, minus what the runtime supplies. */
export type ConsumerSpec = Omit<EventConsumerOptions, "db" | "nc" | "js" | "logger" | "keys" | "subjectPrefix">;

/** What makes a service: its contracts, storage and event handling. */
export interface ServiceModule {
  readonly name: ServiceName;
  readonly entities: readonly EntitySchema<any, any>[];
  readonly migrations: readonly MigrationObject[];
  readonly services: (deps: RuntimeDeps) => ServiceRegistration[];
  readonly consumers?: (deps: RuntimeDeps) => ConsumerSpec[];
  /** True for identity, which verifies the tokens it signs with its own keys. */
  readonly issuesAccessTokens?: boolean;
  /** Credential resolvers beyond access tokens and the bootstrap credential. */
  readonly resolvers?: (deps: RuntimeDeps) => CredentialResolver[];
  /** Public GET resources on the service's port (e.g. `/.well-known/jwks.json`). */
  readonly httpRoutes?: (deps: RuntimeDeps) => Record<string, HttpRoute>;
  /** Extra start-up work once dependencies are connected. */
  readonly onStart?: (deps: RuntimeDeps) => Promise<void>;
  /** Whether a platform operator exists, from the service's own data (identity's operators table). */
  readonly operatorsExist?: (deps: RuntimeDeps) => Promise<boolean>;
  /** True for keys, which resolves API keys in-process instead of calling VerifyApiKey. */
  readonly verifiesApiKeys?: boolean;
  /**
   * Periodic jobs (retention, expiry warnings, rotation, housekeeping): the
   * runtime's Scheduler runs each on one replica per period. See JobSpec.
   */
  readonly jobs?: (deps: RuntimeDeps) => JobSpec[];
  /**
   * Stops what `onStart` started (timers, background work), after the
   * server has stopped taking calls and before Postgres and NATS close.
   */
  readonly onStop?: (deps: RuntimeDeps) => Promise<void>;
}

/** A started service. */
export interface RunningService {
  readonly port: number;
  readonly deps: RuntimeDeps;
  readonly health: HealthStatus;
  /** The service's periodic jobs. */
  readonly scheduler: Scheduler;
  /** Where metrics are served when METRICS_PORT is set (else on `port`, at /metrics). */
  readonly metricsPort: number | undefined;
  /** Graceful stop: server, scheduler (running jobs finish), consumers, relay, NATS, Postgres, in that order. */
  stop(): Promise<void>;
}

/** The JetStream stream a service publishes to. */
export function streamOf(prefix: string, service: string): { name: string; subjects: string[] } {
  return { name: streamNameOf(prefix, service), subjects: [`${prefix}.${service}.>`] };
}

/**
 * Starts a service: telemetry, Postgres (as the service's login role), NATS
 * and its stream, the outbox relay, consumers, the tenant-status mirror, the
 * followers of identity's revocations, the server with its pipeline, and a
 * dependency check that reports health.
 */
export async function startService(module: ServiceModule, config: ServiceConfig, logger = createLogger(module.name, config.LOG_LEVEL)): Promise<RunningService> {
  await initTelemetry(module.name, config.OTEL_EXPORTER_OTLP_ENDPOINT);
  const keys = MeshKeys.fromConfig(module.name, config.BULWARK_SERVICE_KEY, config.BULWARK_SERVICE_PUBLIC_KEYS);
  const db = await Database.open({ clientUrl: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, entities: [...module.entities], poolMax: config.DATABASE_POOL_MAX, logger });
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: config.NATS_URL.split(","),
      name: `bulwark-${module.name}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      ...(config.NATS_USER !== undefined ? { user: config.NATS_USER, pass: config.NATS_PASSWORD } : {}),
    });
  } catch (cause) {
    await db.close();
    throw new Error(`NATS at NATS_URL is unreachable`, { cause });
  }
  const prefix = config.EVENTS_SUBJECT_PREFIX;
  const stream = streamOf(prefix, module.name);
  await ensureStream(await jetstreamManager(nc), { ...stream, replicas: config.NATS_REPLICAS, ...(config.EVENTS_MAX_AGE_DAYS > 0 ? { maxAgeMs: config.EVENTS_MAX_AGE_DAYS * 86_400_000 } : {}) });
  const js = jetstream(nc);
  const assertions = new ServiceAssertions(keys);
  const events = new EventPublisher({ service: module.name, subjectPrefix: prefix, keys });
  const metrics = new ServiceMetrics(module.name);
  // Back-off capped at 5 s: an outage costs one failed batch per 5 s, and after a JetStream
  // leader election (no reconnect to nudge the relay) events flow again within 5 s.
  const relay = new OutboxRelay({ db, js, logger, pollIntervalMs: 500, maxBackoffMs: 5_000, onPublished: metrics.relay.published, onBatchFailed: metrics.relay.failed });
  const tenantStatus = new TenantStatusCache({ keys, logger });
  const revokedSessions = new RevokedSessions();
  const deps: RuntimeDeps = { config, logger, db, nc, js, events, relay, tenantStatus, keys, assertions, revokedSessions, metrics };
  await module.onStart?.(deps);
  await tenantStatus.start(nc, prefix);
  const apiKeys = module.verifiesApiKeys === true ? undefined : remoteApiKeys(deps);
  const followers = [...revocationFollowers(deps, apiKeys)];
  // The API-key cache starts empty, so these need no catching up: started without waiting (keys may not be deployed).
  const cacheFollowers = apiKeys === undefined ? [] : apiKeyFollowers(deps, apiKeys);
  await Promise.all(cacheFollowers.map((f) => f.start(0)));
  const bootstrap = config.BULWARK_BOOTSTRAP_RETIRES === "true" ? await bootstrapRetirement(module, deps) : { retired: false, follower: undefined };
  if (bootstrap.follower !== undefined) followers.push(bootstrap.follower);
  await Promise.all(followers.map((f) => f.start()));

  const registrations = [...module.services(deps), diagnosticsRegistration];
  // Authentication failures and permission denials, batched into signed events for the audit trail.
  const refusals = new RefusalReporter({ db, events, logger, afterCommit: () => relay.nudge() });
  const health = new HealthStatus(registrations.map((r) => r.service.typeName));
  const pipeline = new CallPipeline({
    resolvers: [
      ...(module.resolvers?.(deps) ?? []),
      ...(apiKeys === undefined ? [] : [apiKeys]),
      ...(module.issuesAccessTokens === true ? [] : remoteAccessTokens(deps)),
      new BootstrapCredentialResolver(config.BULWARK_BOOTSTRAP_TOKEN, () => bootstrap.retired),
    ],
    assertions,
    logger,
    tenantGate: tenantStatus,
    clientAddresses: new ClientAddressResolver(config.TRUSTED_PROXIES),
    callTimeoutMs: config.CALL_TIMEOUT_MS,
    streamTimeoutMs: config.STREAM_TIMEOUT_MS,
    publicRateLimit: config.PUBLIC_RATE_LIMIT_PER_MINUTE > 0 ? new RateLimiter({ perMinute: config.PUBLIC_RATE_LIMIT_PER_MINUTE }) : undefined,
    metrics: metrics.rpc,
    refusals,
  });
  const exposition = (request: { readonly accept: string | undefined }): ReturnType<ServiceMetrics["exposition"]> => metrics.exposition(request.accept);
  const separateMetrics = config.METRICS_PORT !== undefined;
  const httpRoutes = { ...(module.httpRoutes?.(deps) ?? {}), ...(separateMetrics ? {} : { [metricsPath]: exposition }) };
  const server = new BulwarkServer({ services: registrations, pipeline, health, logger, httpRoutes });
  relay.start();
  refusals.start();
  // Events written while NATS was away go out as soon as it is back, not
  // when the relay's backoff timer next fires.
  void (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") relay.nudge(true);
  })();
  const consumers = (module.consumers?.(deps) ?? []).map((spec) => new EventConsumer({ onRedelivered: metrics.redelivered(spec.durable), ...spec, db, nc, js, logger, keys, subjectPrefix: prefix }));
  for (const c of consumers) await c.start();
  metrics.watch({ db, consumers, logger });
  const scheduler = new Scheduler({ service: module.name, db, events, logger: logger.child({ part: "scheduler" }), jobs: module.jobs?.(deps) ?? [], observer: metrics.scheduler, afterCommit: () => relay.nudge() });
  scheduler.start();

  const check = async (): Promise<void> => {
    const [dbUp, natsUp] = await Promise.all([db.ping(1500), natsAlive(nc)]);
    // Until the tenant gate has loaded who is suspended, no tenant call can be admitted safely.
    const gate = tenantStatus.ready;
    const serving = dbUp && natsUp && gate;
    if (serving !== (health.get("") === 1) && !(serving && first)) logger.warn({ postgres: dbUp, nats: natsUp, tenantGate: gate }, serving ? "dependencies are back: SERVING" : "a dependency is down: NOT_SERVING");
    health.setAll(serving);
    first = false;
  };
  let first = true;
  await check();
  const timer = setInterval(() => void check(), 1000);
  const port = await server.listen(config.PORT, config.HOST);
  const metricsServer = separateMetrics ? await listenForMetrics(exposition, config.METRICS_PORT!, config.HOST) : undefined;
  const metricsPort = metricsServer === undefined ? undefined : (metricsServer.address() as { port: number }).port;
  logger.info({ port, host: config.HOST, metricsPort: metricsPort ?? port }, `${module.name} listening`);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      clearInterval(timer);
      health.setAll(false);
      await server.close(config.SHUTDOWN_GRACE_MS);
      await refusals.stop();
      await scheduler.stop();
      await module.onStop?.(deps).catch((err: unknown) => logger.error({ err: describeError(err) }, "stopping the service's own work failed"));
      for (const c of consumers) await c.stop();
      await relay.stop();
      await Promise.all([...followers, ...cacheFollowers].map((f) => f.stop()));
      await tenantStatus.stopped();
      await nc.drain().catch(() => undefined);
      await db.close();
      await shutdownTelemetry();
      if (metricsServer !== undefined) {
        const closed = new Promise((resolve) => metricsServer.close(resolve));
        metricsServer.closeAllConnections();
        await closed;
      }
      logger.info("stopped");
    })());
  return { port, deps, health, scheduler, metricsPort, stop };
}

/**
 * With METRICS_PORT set, metrics leave the service's port for a plain
 * HTTP/1.1 listener of their own, which a NetworkPolicy can open to the
 * monitoring namespace only. It serves GET /metrics and nothing else.
 */
function listenForMetrics(exposition: (request: { readonly accept: string | undefined }) => ReturnType<ServiceMetrics["exposition"]>, port: number, host: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== metricsPath) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    exposition({ accept: req.headers.accept }).then(
      (m) => res.writeHead(200, { "content-type": m.contentType, "cache-control": "no-store" }).end(m.body),
      () => res.writeHead(500, { "content-type": "text/plain" }).end("internal error"),
    );
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host }, () => {
      server.off("error", reject);
      server.unref();
      resolve(server);
    });
  });
}

/**
 * Every service but identity verifies access tokens locally against the
 * keys identity publishes (fetched through GetJwks, cached, refetched on an
 * unknown key id) and the mesh-wide revocations.
 */
function remoteAccessTokens(deps: RuntimeDeps): CredentialResolver[] {
  const auth = createClient(AuthService, createServiceTransport(deps.config.IDENTITY_URL, deps.assertions, "identity"));
  return [new AccessTokenVerifier({ source: CachedJwksSource.fromClient(auth), revoked: deps.revokedSessions, cacheObserver: deps.metrics.cache })];
}

/**
 * Every service but keys accepts API keys through keys' VerifyApiKey,
 * with a short cache that the followers below clear (see ApiKeyResolver).
 */
function remoteApiKeys(deps: RuntimeDeps): ApiKeyResolver {
  const client = createClient(ApiKeyService, createServiceTransport(deps.config.KEYS_URL, deps.assertions, "keys"));
  return new ApiKeyResolver({ verifier: client, service: deps.config.SERVICE, revoked: deps.revokedSessions });
}

/**
 * What makes a cached API key stale: any change keys announces about it
 * (`key.revoked`, `key.updated`, `key.rotated`, …, all with the key id as
 * aggregate), followed live from keys' stream, and the suspension or
 * deletion of its owner from identity's (permission reductions come with
 * the grants_reduced follower). The cache starts empty, so only events from
 * now on matter. Where keys is not deployed its stream never appears and
 * the follower keeps retrying quietly; API keys are then refused.
 */
function apiKeyFollowers(deps: RuntimeDeps, apiKeys: ApiKeyResolver): StreamFollower[] {
  const prefix = deps.config.EVENTS_SUBJECT_PREFIX;
  // From the start of the process: nothing can be cached before, and nothing after is missed while the consumer is created.
  const startedAt = new Date();
  const now = (): Date => startedAt;
  const keys = new StreamFollower({
    js: deps.js,
    stream: streamOf(prefix, "keys").name,
    subject: `${prefix}.keys.key.>`,
    source: "keys",
    subjectPrefix: prefix,
    keys: deps.keys,
    since: now,
    onEvent: (envelope) => apiKeys.forgetKey(envelope.aggregateId),
    logger: deps.logger,
  });
  return [
    keys,
    identityFollower(deps, `${prefix}.identity.user.suspended`, now, (envelope) => {
      const p = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, UserSuspendedSchema);
      if (p?.user !== undefined) apiKeys.forgetOwner(p.user.id);
    }),
    identityFollower(deps, `${prefix}.identity.user.deleted`, now, (envelope) => {
      const p = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, UserDeletedSchema);
      if (p !== undefined && p.userId !== "") apiKeys.forgetOwner(p.userId);
    }),
  ];
}

/** The longest an access token can live (the policy's upper bound), plus slack. */
const longestTokenLifetimeMs = 25 * 3_600_000;

/** A follower of one subject of identity's stream, from one token lifetime ago. */
function identityFollower(deps: RuntimeDeps, subject: string, since: () => Date, onEvent: (envelope: Envelope) => void): StreamFollower {
  const prefix = deps.config.EVENTS_SUBJECT_PREFIX;
  return new StreamFollower({ js: deps.js, stream: streamOf(prefix, "identity").name, subject, source: "identity", subjectPrefix: prefix, keys: deps.keys, since, onEvent, logger: deps.logger });
}

/**
 * Session revocations and permission reductions, followed from identity's
 * stream (signed by identity) since the oldest token that could still be
 * valid, and live after that: a service that starts, restarts or reconnects
 * refuses what was revoked while it was away.
 */
function revocationFollowers(deps: RuntimeDeps, apiKeys: ApiKeyResolver | undefined): StreamFollower[] {
  const prefix = deps.config.EVENTS_SUBJECT_PREFIX;
  const since = (): Date => new Date(Date.now() - longestTokenLifetimeMs);
  const revoked = deps.revokedSessions;
  return [
    identityFollower(deps, revocationSubject(prefix), since, (envelope) => {
      const p = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, SessionRevokedSchema);
      if (p !== undefined && p.sessionId !== "") revoked.revoke(p.sessionId, Number(p.validUntilUnix));
    }),
    identityFollower(deps, grantsReducedSubject(prefix), since, (envelope) => {
      const p = envelope.payload === undefined ? undefined : anyUnpack(envelope.payload, GrantsReducedSchema);
      if (p === undefined || p.userId === "") return;
      revoked.reduceGrants(p.userId, Number(p.permissionEpoch), Number(p.validUntilUnix));
      // The owner's API keys shrink with them.
      apiKeys?.forgetOwner(p.userId);
    }),
  ];
}

/** The runtime fact recording that the bootstrap credential is retired. */
const bootstrapRetiredKey = "bootstrap_retired";

/**
 * Whether the bootstrap credential is retired: once a platform operator
 * exists it is, in every service, for good. Each service records the fact
 * in its own schema the first time it learns it (identity's signed
 * operator.created event, or identity's own operators table), so losing
 * the NATS stream never brings the credential back.
 */
async function bootstrapRetirement(module: ServiceModule, deps: RuntimeDeps): Promise<{ retired: boolean; follower: StreamFollower | undefined }> {
  const state = { retired: false, follower: undefined as StreamFollower | undefined };
  const retire = (why: string): void => {
    if (state.retired) return;
    state.retired = true;
    deps.logger.info({ why }, "a platform operator exists: the bootstrap credential is retired");
    recordRuntimeState(deps.db, bootstrapRetiredKey, new Date().toISOString()).catch((err: unknown) => deps.logger.error({ err: describeError(err) }, "could not record the bootstrap retirement; retrying on the next event"));
  };
  if ((await readRuntimeState(deps.db, bootstrapRetiredKey)) !== undefined) {
    state.retired = true;
    return state;
  }
  if ((await module.operatorsExist?.(deps)) === true) retire("an operator exists in this service's data");
  if (state.retired) return state;
  state.follower = identityFollower(deps, `${deps.config.EVENTS_SUBJECT_PREFIX}.identity.operator.created`, () => new Date(0), () => retire("identity announced an operator"));
  return state;
}

async function natsAlive(nc: NatsConnection): Promise<boolean> {
  if (nc.isClosed()) return false;
  try {
    await Promise.race([nc.flush(), new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 1500).unref())]);
    return true;
  } catch {
    return false;
  }
}

/** The environment's configuration, or exit 1 naming the bad variable. */
function configOrExit(service: ServiceName): ServiceConfig {
  try {
    return loadConfig(service);
  } catch (err) {
    process.stderr.write(`${service}: ${err instanceof ConfigError ? err.message : "cannot read configuration"}\n`);
    process.exit(1);
  }
}

/**
 * The process entry point of a service: parse the environment (exit 1 with
 * the offending variable's name), start, and stop gracefully on SIGTERM or
 * SIGINT.
 */
export async function main(module: ServiceModule): Promise<void> {
  const config = configOrExit(module.name);
  const logger = createLogger(module.name, config.LOG_LEVEL);
  // Signals are handled from the first moment: one that arrives during
  // start-up waits for it to finish, then stops cleanly.
  const started = startService(module, config, logger);
  const shutdown = (signal: string): void => {
    logger.info({ signal }, "shutting down");
    started.then((running) => running.stop()).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: describeError(err) }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
  try {
    await started;
  } catch (err) {
    logger.fatal({ err: describeError(err), cause: describeError((err as { cause?: unknown }).cause) }, "start-up failed");
    process.exit(1);
  }
}

/** The migration entry point: provisions roles and schema, applies migrations. */
export async function migrateMain(module: ServiceModule): Promise<void> {
  const config = configOrExit(module.name);
  const logger = createLogger(module.name, config.LOG_LEVEL);
  try {
    const applied = await migrateService(module, config);
    logger.info({ applied }, applied.length > 0 ? "migrations applied" : "schema is up to date");
  } catch (err) {
    logger.fatal({ err: describeError(err) }, "migration failed");
    process.exit(1);
  }
}

/** Provisions the service's schema and roles and applies its migrations. */
export async function migrateService(module: ServiceModule, config: ServiceConfig): Promise<string[]> {
  const app = new URL(config.DATABASE_URL);
  const admin = new URL(config.DATABASE_ADMIN_URL);
  const database = app.pathname.replace(/^\//, "") || "bulwark";
  return migrate({
    adminUrl: admin.toString(),
    database,
    schema: config.DATABASE_SCHEMA,
    ownerRole: `${decodeURIComponent(app.username)}_owner`,
    appRole: decodeURIComponent(app.username),
    ...(app.password !== "" ? { appPassword: decodeURIComponent(app.password) } : {}),
    migrations: [...module.migrations],
  });
}
