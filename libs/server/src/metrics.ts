import type { DescMethod } from "@bufbuild/protobuf";
import { describeError, runAsPlatform, type CacheObserver, type Logger } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import type { EventConsumer } from "@bulwark/events";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric, type OpenMetricsContentType, type PrometheusContentType } from "prom-client";
import type { RpcMetrics } from "./pipeline.js";
import type { SchedulerObserver } from "./scheduler.js";

/** The HTTP path metrics are served on. */
export const metricsPath = "/metrics";

/** Latency buckets of RPCs, in seconds: from a cached read (~1 ms) to a slow sign-in (argon2, ~1 s) and timeouts. */
const rpcBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Durations of scheduled runs, in seconds. */
const jobBuckets = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900];
/** How long a scrape waits for Postgres or NATS before keeping the last value. */
const collectTimeoutMs = 1_000;

/** The numbers a service adds of its own (identity's argon2 queue, say), read at scrape time. */
export interface GaugeSpec {
  /** Full metric name, `bulwark_<service>_…` by convention. */
  readonly name: string;
  readonly help: string;
  read(): number;
}

/**
 * One service's Prometheus metrics, on its own registry (several services
 * may share a process in tests and benchmarks) with a `service` label on
 * every series. Exposed at `/metrics` by prom-client in the OpenMetrics
 * text format to scrapers that ask for it (Prometheus does, in its Accept
 * header) and in the Prometheus text format 0.0.4 otherwise (curl,
 * `promtool check metrics`, which reads only that one). The labels are bounded by the code, never by data: RPC
 * methods, gRPC codes, durable and job names, cache names — no tenant,
 * user or key ids, so the exposition reveals no tenant data.
 *
 * Each library reports through a small hook rather than prom-client (the
 * pipeline's `RpcMetrics`, the caches' `CacheObserver`, the scheduler's
 * `SchedulerObserver`, the relay's and consumers' callbacks); what lives in
 * Postgres or JetStream (outbox backlog, parked events, consumer lag) is
 * read when Prometheus scrapes, cheaply and with a timeout.
 */
export class ServiceMetrics {
  /** Every metric of the service. */
  readonly registry: Registry<PrometheusContentType | OpenMetricsContentType>;
  /** Each metric's name as declared (see `exposition`). */
  readonly #declaredNames = new WeakMap<object, string>();
  /** Renders run one at a time: each sets the registry's format. */
  #rendering: Promise<unknown> = Promise.resolve();
  readonly #rpcHandled: Counter<"grpc_service" | "grpc_method" | "grpc_code">;
  readonly #rpcSeconds: Histogram<"grpc_service" | "grpc_method">;
  readonly #cacheLookups: Counter<"cache" | "result">;
  readonly #relayPublished: Counter;
  readonly #relayFailures: Counter;
  readonly #redeliveries: Counter<"durable">;
  readonly #jobRuns: Counter<"job" | "outcome">;
  readonly #jobSeconds: Histogram<"job">;
  readonly #jobTakeovers: Counter<"job">;

  constructor(service: string) {
    const registry = new Registry<PrometheusContentType | OpenMetricsContentType>();
    registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: registry });
    // prom-client's totals of active handles, requests and resources are gauges named like counters
    // (promtool refuses them); the per-type gauges nodejs_active_handles{type} etc. say the same.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);
    this.registry = registry;
    const registers = [registry];
    this.#rpcHandled = new Counter({ name: "bulwark_rpc_server_handled_total", help: "RPCs completed by the server, by gRPC service, method and status code (OK or the error's code).", labelNames: ["grpc_service", "grpc_method", "grpc_code"], registers });
    this.#rpcSeconds = new Histogram({ name: "bulwark_rpc_server_handling_seconds", help: "Time from admission to the answer of each RPC, in seconds.", labelNames: ["grpc_service", "grpc_method"], buckets: rpcBuckets, registers });
    this.#cacheLookups = new Counter({ name: "bulwark_cache_lookups_total", help: "Lookups in a read cache, by cache and result (hit or miss).", labelNames: ["cache", "result"], registers });
    this.#relayPublished = new Counter({ name: "bulwark_outbox_relay_published_events_total", help: "Outbox events the relay published to JetStream and marked sent.", registers });
    this.#relayFailures = new Counter({ name: "bulwark_outbox_relay_failed_batches_total", help: "Relay batches that failed (NATS or Postgres unreachable) and were retried.", registers });
    this.#redeliveries = new Counter({ name: "bulwark_consumer_redeliveries_total", help: "Messages a durable consumer received again after a failed or unacknowledged delivery.", labelNames: ["durable"], registers });
    this.#jobRuns = new Counter({ name: "bulwark_scheduler_runs_total", help: "Runs of scheduled jobs on this replica, by job and outcome (succeeded or failed).", labelNames: ["job", "outcome"], registers });
    this.#jobSeconds = new Histogram({ name: "bulwark_scheduler_run_duration_seconds", help: "Duration of scheduled runs on this replica, in seconds.", labelNames: ["job"], buckets: jobBuckets, registers });
    this.#jobTakeovers = new Counter({ name: "bulwark_scheduler_takeovers_total", help: "Runs this replica took over after the claiming replica's lease expired.", labelNames: ["job"], registers });
  }

  /** What the call pipeline reports each RPC to. */
  readonly rpc: RpcMetrics = {
    observe: (method: DescMethod, code: string, seconds: number) => {
      const service = method.parent.typeName;
      this.#rpcHandled.inc({ grpc_service: service, grpc_method: method.name, grpc_code: code });
      this.#rpcSeconds.observe({ grpc_service: service, grpc_method: method.name }, seconds);
    },
  };

  /** What read caches report lookups to. */
  readonly cache: CacheObserver = {
    lookup: (cache: string, hit: boolean) => this.#cacheLookups.inc({ cache, result: hit ? "hit" : "miss" }),
  };

  /** What the scheduler reports runs to. */
  readonly scheduler: SchedulerObserver = {
    runFinished: (job, outcome, seconds) => {
      this.#jobRuns.inc({ job, outcome });
      this.#jobSeconds.observe({ job }, seconds);
    },
    takenOver: (job) => this.#jobTakeovers.inc({ job }),
  };

  /** The relay's callbacks. */
  readonly relay = {
    published: (eventIds: readonly string[]): void => this.#relayPublished.inc(eventIds.length),
    failed: (): void => this.#relayFailures.inc(),
  };

  /** A consumer's redelivery callback. */
  redelivered(durable: string): () => void {
    return () => this.#redeliveries.inc({ durable });
  }

  /** A gauge read at every scrape. */
  gauge(spec: GaugeSpec): void {
    new Gauge({
      name: spec.name,
      help: spec.help,
      registers: [this.registry],
      collect() {
        this.set(spec.read());
      },
    });
  }

  /**
   * The gauges read from the service's dependencies at scrape time: the
   * outbox backlog and the age of its oldest unsent event, parked events
   * per consumer, each durable consumer's lag, and the Postgres pool.
   */
  watch(deps: { db: Database; consumers: readonly EventConsumer[]; logger: Logger }): void {
    const { db, consumers, logger } = deps;
    const registers = [this.registry];
    const failed = (what: string) => (err: unknown) => logger.debug({ err: describeError(err), what }, "a metric could not be read; its last value stays");
    // One query feeds both outbox gauges; it walks only the partial index of unsent rows.
    const outbox = sampled(() =>
      withTimeout(
        runAsPlatform("metrics read the outbox backlog", () =>
          db.transaction((em) => em.execute<{ unsent: string; oldest_s: number | null }[]>("select count(*) as unsent, extract(epoch from now() - min(created_at))::float8 as oldest_s from outbox where sent_at is null")),
        ),
      ),
    );
    new Gauge({
      name: "bulwark_outbox_unsent_events",
      help: "Events committed to the outbox and not yet published to JetStream.",
      registers,
      async collect() {
        await outbox().then((rows) => this.set(Number(rows[0]?.unsent ?? 0)), failed("outbox"));
      },
    });
    new Gauge({
      name: "bulwark_outbox_oldest_unsent_age_seconds",
      help: "Age of the oldest unsent outbox event in seconds (0 when none waits).",
      registers,
      async collect() {
        await outbox().then((rows) => this.set(Number(rows[0]?.oldest_s ?? 0)), failed("outbox"));
      },
    });
    const durables = consumers.map((c) => c.durable);
    new Gauge({
      name: "bulwark_events_parked",
      help: "Poison events parked for inspection (parked_events), by consumer.",
      labelNames: ["consumer"],
      registers,
      async collect() {
        await withTimeout(runAsPlatform("metrics count parked events", () => db.transaction((em) => em.execute<{ consumer: string; n: string }[]>("select consumer, count(*) as n from parked_events group by consumer")))).then((rows) => {
          this.reset();
          for (const d of durables) this.set({ consumer: d }, 0);
          for (const r of rows) this.set({ consumer: r.consumer }, Number(r.n));
        }, failed("parked_events"));
      },
    });
    // Consumer info is one NATS request per durable; both gauges share it.
    const lags = sampled(() => Promise.all(consumers.map((c) => withTimeout(c.lag()).then((lag) => ({ durable: c.durable, lag }), (err: unknown) => (failed(`consumer ${c.durable}`)(err), undefined)))));
    new Gauge({
      name: "bulwark_consumer_pending_messages",
      help: "Messages of the stream not yet delivered to a durable consumer (num_pending): its lag.",
      labelNames: ["durable"],
      registers,
      async collect() {
        for (const l of await lags()) if (l !== undefined) this.set({ durable: l.durable }, l.lag.pending);
      },
    });
    new Gauge({
      name: "bulwark_consumer_ack_pending_messages",
      help: "Messages delivered to a durable consumer and not yet acknowledged (num_ack_pending).",
      labelNames: ["durable"],
      registers,
      async collect() {
        for (const l of await lags()) if (l !== undefined) this.set({ durable: l.durable }, l.lag.ackPending);
      },
    });
    new Gauge({
      name: "bulwark_consumer_redelivered_messages",
      help: "Messages delivered more than once and not yet acknowledged (num_redelivered).",
      labelNames: ["durable"],
      registers,
      async collect() {
        for (const l of await lags()) if (l !== undefined) this.set({ durable: l.durable }, l.lag.redelivered);
      },
    });
    new Gauge({
      name: "bulwark_db_pool_connections",
      help: "Postgres connections of this process's pool, by state: used, free, pending_acquires (checkouts waiting), pending_creates, max.",
      labelNames: ["state"],
      registers,
      collect() {
        const s = db.poolStats();
        this.set({ state: "used" }, s.used);
        this.set({ state: "free" }, s.free);
        this.set({ state: "pending_acquires" }, s.pendingAcquires);
        this.set({ state: "pending_creates" }, s.pendingCreates);
        this.set({ state: "max" }, s.max);
      },
    });
  }

  /**
   * The exposition, as the `/metrics` route serves it: OpenMetrics when the
   * request's Accept header names it, else the Prometheus text format.
   */
  async exposition(accept?: string): Promise<{ contentType: string; body: string; maxAgeSeconds: number }> {
    const openMetrics = accept?.includes("application/openmetrics-text") === true;
    const render = this.#rendering.then(() => this.#render(openMetrics));
    this.#rendering = render.catch(() => undefined);
    return render;
  }

  async #render(openMetrics: boolean): Promise<{ contentType: string; body: string; maxAgeSeconds: number }> {
    const registry = this.registry;
    // prom-client's OpenMetrics rendering renames each counter in place
    // (`x_total` becomes `x`, the suffix then added to its samples only), so
    // a later Prometheus-format render would lose the suffix: put back the
    // declared names first. A metric's declared name is recorded before any
    // render can have touched it.
    for (const m of registry.getMetricsAsArray() as unknown as Metric[]) {
      const named = m as unknown as { name: string };
      const declared = this.#declaredNames.get(m);
      if (declared === undefined) this.#declaredNames.set(m, named.name);
      else named.name = declared;
    }
    registry.setContentType(openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE);
    return { contentType: registry.contentType, body: await registry.metrics(), maxAgeSeconds: 0 };
  }
}

/**
 * Shares one read among the gauges of one scrape: the first caller starts
 * it, the others (within a second) get the same promise.
 */
function sampled<T>(read: () => Promise<T>, ttlMs = 1_000): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (last === undefined || now - last.at > ttlMs) last = { at: now, value: read() };
    return last.value;
  };
}

/** Rejects when `p` takes longer than the scrape may wait. */
function withTimeout<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${collectTimeoutMs} ms`)), collectTimeoutMs);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
