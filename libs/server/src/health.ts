import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { health } from "@bulwark/contracts";
import { EventEmitter, on } from "node:events";

const { HealthCheckResponse_ServingStatus: Status } = health;
type Status = health.HealthCheckResponse_ServingStatus;

/**
 * The serving status of each service name ("" is the whole server), as
 * grpc.health.v1 reports it. A dependency check flips every name to
 * NOT_SERVING while Postgres or NATS is unreachable.
 */
export class HealthStatus {
  readonly #status = new Map<string, Status>();
  readonly #changes = new EventEmitter();

  constructor(serviceNames: Iterable<string>) {
    this.#changes.setMaxListeners(0);
    this.#status.set("", Status.NOT_SERVING);
    for (const name of serviceNames) this.#status.set(name, Status.NOT_SERVING);
  }

  /** Sets every known service name to SERVING or NOT_SERVING. */
  setAll(serving: boolean): void {
    for (const name of this.#status.keys()) this.set(name, serving ? Status.SERVING : Status.NOT_SERVING);
  }

  set(name: string, status: Status): void {
    if (this.#status.get(name) === status) return;
    this.#status.set(name, status);
    this.#changes.emit("change", name, status);
  }

  get(name: string): Status | undefined {
    return this.#status.get(name);
  }

  names(): string[] {
    return [...this.#status.keys()];
  }

  /** Status changes of one name, until the signal aborts. */
  async *watch(name: string, signal: AbortSignal): AsyncGenerator<Status> {
    yield this.#status.get(name) ?? Status.SERVICE_UNKNOWN;
    try {
      for await (const [changed, status] of on(this.#changes, "change", { signal })) {
        if (changed === name) yield status as Status;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  }
}

/** The grpc.health.v1.Health implementation over a HealthStatus. */
export function healthService(status: HealthStatus): ServiceImpl<typeof health.Health> {
  return {
    check(req) {
      const s = status.get(req.service);
      // NOT_FOUND, as grpc.health.v1 specifies; the name is not echoed (it
      // is the caller's, of any length and content).
      if (s === undefined) throw new ConnectError("unknown service", Code.NotFound);
      return { status: s };
    },
    async *watch(req, ctx: HandlerContext) {
      for await (const s of status.watch(req.service, ctx.signal)) yield { status: s };
    },
    list() {
      const statuses: Record<string, { status: Status }> = {};
      for (const name of status.names()) statuses[name] = { status: status.get(name)! };
      return { statuses };
    },
  };
}
