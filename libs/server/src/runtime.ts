import type { EntitySchema, MigrationObject } from "@mikro-orm/core";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { createClient } from "@connectrpc/connect";
import { AuthService } from "@bulwark/contracts";
import {
  AccessTokenVerifier,
  BootstrapCredentialResolver,
  CachedJwksSource,
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
import { Database, migrate } from "@bulwark/db";
import { ensureStream, EventConsumer, EventPublisher, OutboxRelay, TenantStatusCache, type EventConsumerOptions } from "@bulwark/events";
import { BulwarkServer, type HttpRoute, type ServiceRegistration } from "./server.js";
import { diagnosticsRegistration } from "./diagnostics.js";
import { createServiceTransport } from "./client.js";
import { HealthStatus } from "./health.js";
import { CallPipeline } from "./pipeline.js";

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
  readonly assertions: ServiceAssertions;
  /** Sessions revoked mesh-wide, live from NATS and replayed on start. */
  readonly revokedSessions: RevokedSessions;
}

/** A consumer a service runs, minus what the runtime supplies. */
export type ConsumerSpec = Omit<EventConsumerOptions, "db" | "nc" | "js" | "logger">;

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
  /** Graceful stop: server, consumers, relay, NATS, Postgres, in that order. */
  stop(): Promise<void>;
}

/** The JetStream stream a service publishes to. */
export function streamOf(prefix: string, service: string): { name: string; subjects: string[] } {
  return { name: `${prefix}_${service}`.toUpperCase().replace(/[^A-Z0-9_]/g, "_"), subjects: [`${prefix}.${service}.>`] };
}

/**
 * Starts a service: telemetry, Postgres (as the service's login role), NATS
 * and its stream, the outbox relay, consumers, the tenant-status mirror, the
 * server with its pipeline, and a dependency check that reports health.
 */
export async function startService(module: ServiceModule, config: ServiceConfig, logger = createLogger(module.name, config.LOG_LEVEL)): Promise<RunningService> {
  await initTelemetry(module.name, config.OTEL_EXPORTER_OTLP_ENDPOINT);
  const db = await Database.open({ clientUrl: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, entities: [...module.entities], poolMax: config.DATABASE_POOL_MAX, logger });
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: config.NATS_URL, name: `bulwark-${module.name}`, maxReconnectAttempts: -1, reconnectTimeWait: 1000 });
  } catch (cause) {
    await db.close();
    throw new Error(`NATS at NATS_URL is unreachable`, { cause });
  }
  const stream = streamOf(config.EVENTS_SUBJECT_PREFIX, module.name);
  await ensureStream(await jetstreamManager(nc), stream);
  const js = jetstream(nc);
  const assertions = new ServiceAssertions(config.BULWARK_SERVICE_SECRET, module.name);
  const events = new EventPublisher({ service: module.name, subjectPrefix: config.EVENTS_SUBJECT_PREFIX });
  const relay = new OutboxRelay({ db, js, logger, pollIntervalMs: 500 });
  const tenantStatus = new TenantStatusCache();
  await tenantStatus.start(nc, config.EVENTS_SUBJECT_PREFIX);
  const revokedSessions = new RevokedSessions();
  revokedSessions.subscribe(nc, config.EVENTS_SUBJECT_PREFIX);
  const replayed = await replayRevocations(js, config.EVENTS_SUBJECT_PREFIX, revokedSessions);
  if (replayed > 0) logger.info({ replayed }, "replayed session revocations");
  const deps: RuntimeDeps = { config, logger, db, nc, js, events, relay, tenantStatus, assertions, revokedSessions };
  const bootstrapRetired = config.BULWARK_BOOTSTRAP_RETIRES === "true" ? await watchOperators(nc, config.EVENTS_SUBJECT_PREFIX, logger) : { retired: false };
  await module.onStart?.(deps);

  const registrations = [...module.services(deps), diagnosticsRegistration];
  const health = new HealthStatus(registrations.map((r) => r.service.typeName));
  const pipeline = new CallPipeline({
    resolvers: [
      ...(module.resolvers?.(deps) ?? []),
      ...(module.issuesAccessTokens === true ? [] : remoteAccessTokens(deps)),
      new BootstrapCredentialResolver(config.BULWARK_BOOTSTRAP_TOKEN, () => bootstrapRetired.retired),
    ],
    assertions,
    logger,
    tenantGate: tenantStatus,
  });
  const server = new BulwarkServer({ services: registrations, pipeline, health, logger, httpRoutes: module.httpRoutes?.(deps) ?? {} });
  relay.start();
  // Events written while NATS was away go out as soon as it is back, not
  // when the relay's backoff timer next fires.
  void (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") relay.nudge();
  })();
  const consumers = (module.consumers?.(deps) ?? []).map((spec) => new EventConsumer({ ...spec, db, nc, js, logger }));
  for (const c of consumers) await c.start();

  const check = async (): Promise<void> => {
    const [dbUp, natsUp] = await Promise.all([db.ping(1500), natsAlive(nc)]);
    const serving = dbUp && natsUp;
    if (serving !== (health.get("") === 1) && !(serving && first)) logger.warn({ postgres: dbUp, nats: natsUp }, serving ? "dependencies are back: SERVING" : "a dependency is down: NOT_SERVING");
    health.setAll(serving);
    first = false;
  };
  let first = true;
  await check();
  const timer = setInterval(() => void check(), 1000);
  const port = await server.listen(config.PORT, config.HOST);
  logger.info({ port, host: config.HOST }, `${module.name} listening`);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      clearInterval(timer);
      health.setAll(false);
      await server.close(config.SHUTDOWN_GRACE_MS);
      await module.onStop?.(deps);
      for (const c of consumers) await c.stop();
      await relay.stop();
      tenantStatus.stop();
      await nc.drain().catch(() => undefined);
      await db.close();
      await shutdownTelemetry();
      logger.info("stopped");
    })());
  return { port, deps, health, stop };
}

/**
 * Every service but identity verifies access tokens locally against the
 * keys identity publishes (fetched through GetJwks, cached, refetched on an
 * unknown key id) and the mesh-wide set of revoked sessions.
 */
function remoteAccessTokens(deps: RuntimeDeps): CredentialResolver[] {
  const auth = createClient(AuthService, createServiceTransport(deps.config.IDENTITY_URL, deps.assertions));
  return [new AccessTokenVerifier({ source: CachedJwksSource.fromClient(auth), revoked: deps.revokedSessions })];
}

/** The subject identity announces a new platform operator on. */
function operatorCreatedSubject(prefix: string): string {
  return `${prefix}.identity.operator.created`;
}

/**
 * Whether a platform operator exists, from identity's stream (the last
 * operator.created, if any) and then live: the bootstrap credential is
 * retired as soon as one does, in every service.
 */
async function watchOperators(nc: NatsConnection, prefix: string, logger: Logger): Promise<{ retired: boolean }> {
  const state = { retired: false };
  const retire = (): void => {
    if (state.retired) return;
    state.retired = true;
    logger.info("a platform operator exists: the bootstrap credential is retired");
  };
  nc.subscribe(operatorCreatedSubject(prefix), {
    callback: (err) => {
      if (err === null) retire();
    },
  });
  try {
    const jsm = await jetstreamManager(nc);
    if ((await jsm.streams.getMessage(streamOf(prefix, "identity").name, { last_by_subj: operatorCreatedSubject(prefix) })) !== null) retire();
  } catch {
    // No identity stream, or no operator yet.
  }
  return state;
}

/** The longest an access token can live (the policy's upper bound), plus slack. */
const longestTokenLifetimeMs = 25 * 3_600_000;

/**
 * Replays the session revocations of the last token lifetime from
 * identity's stream, so a service that starts (or restarts) after a
 * revocation refuses that session too. Returns how many it read; 0 when
 * identity has published nothing yet.
 */
async function replayRevocations(js: JetStreamClient, prefix: string, revoked: RevokedSessions): Promise<number> {
  let consumer;
  try {
    consumer = await js.consumers.get(streamOf(prefix, "identity").name, {
      filter_subjects: revocationSubject(prefix),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(Date.now() - longestTokenLifetimeMs).toISOString(),
    });
  } catch {
    return 0;
  }
  if ((await consumer.info()).num_pending === 0) return 0;
  let read = 0;
  const messages = await consumer.consume();
  for await (const m of messages) {
    revoked.ingest(m.data);
    read++;
    if (m.info.pending === 0) break;
  }
  await messages.close();
  return read;
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
