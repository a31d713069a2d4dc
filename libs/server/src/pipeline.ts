import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { context as otelContext, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter } from "@opentelemetry/api";
import {
  authorize,
  describeError,
  isPlatformPrincipal,
  newRequestId,
  permissionDenied,
  resolvePrincipal,
  ruleOf,
  runWithContext,
  serviceAssertionHeader,
  toConnectError,
  tracer,
  validateMessage,
  type CallContext,
  type CredentialResolver,
  type Logger,
  type Principal,
  type ServiceAssertions,
} from "@bulwark/core";
import { normalizeAddress, peerAddressKey, type ClientAddressResolver } from "./client-address.js";
import { addressBucket, type RateLimiter } from "./rate-limit.js";
import type { Refusal } from "./refusals.js";

/** The header a platform principal uses to act inside one tenant. */
export const tenantHeader = "bulwark-tenant";
/** The header carrying a caller-chosen request id (echoed back). */
export const requestIdHeader = "x-request-id";

/**
 * Tells whether a tenant's calls must be refused: suspended or closing, or
 * from an address outside the tenant's allowlist. Fed by tenancy's events in
 * every service; see TenantStatusCache.
 */
export interface TenantGate {
  /** False until the tenants' state has loaded: tenant calls are refused meanwhile (fail closed). */
  readonly ready: boolean;
  isBlocked(tenantId: string): boolean;
  /** True when `ip` may call as the tenant's principals. */
  allows(tenantId: string, ip: string | undefined): boolean;
}

/**
 * Where the pipeline reports each finished call (RED metrics): `code` is
 * "OK" or the Connect code's name ("NotFound"), `seconds` the time from
 * admission to the answer. See ServiceMetrics.
 */
export interface RpcMetrics {
  observe(method: DescMethod, code: string, seconds: number): void;
}

/** What the pipeline needs to admit a call. */
export interface CallPipelineOptions {
  readonly resolvers: readonly CredentialResolver[];
  readonly assertions: ServiceAssertions;
  readonly logger: Logger;
  readonly tenantGate?: TenantGate | undefined;
  /**
   * Turns the connection's peer and forwarding headers into the call's
   * client address (TRUSTED_PROXIES). Without one, the peer is the client.
   */
  readonly clientAddresses?: ClientAddressResolver | undefined;
  /**
   * The longest a call may run on the server (CALL_TIMEOUT_MS); past it the
   * call answers DEADLINE_EXCEEDED and its signal is aborted (see
   * CallDeadlines). A client's own shorter deadline aborts the call's signal
   * as before. Without one, calls are not bounded in time.
   */
  readonly callTimeoutMs?: number | undefined;
  /**
   * The longest a server-streaming call may run in all (STREAM_TIMEOUT_MS),
   * however fast each message comes; see `CallPipeline.stream`. Without
   * one, a stream is bounded only per message (by `callTimeoutMs`).
   */
  readonly streamTimeoutMs?: number | undefined;
  /**
   * Limits anonymous-capable calls: every method whose rule is `public` is
   * counted per client address and method (PUBLIC_RATE_LIMIT_PER_MINUTE),
   * except calls relayed by another Bulwark service under a verified
   * assertion (the service at the edge already counted them).
   */
  readonly publicRateLimit?: RateLimiter | undefined;
  readonly metrics?: RpcMetrics | undefined;
  /**
   * Where authentication failures and permission denials go (batched into
   * signed events for the audit trail; see RefusalReporter).
   */
  readonly refusals?: { report(r: Refusal): void } | undefined;
}

/** What admission learned about a call before it was refused. */
interface Admission {
  principal?: Principal | undefined;
  tenantId?: string | undefined;
  clientIp?: string | undefined;
}

const headerGetter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};

interface PendingCall {
  readonly at: number;
  readonly hctx: HandlerContext;
  readonly reject: (reason: unknown) => void;
}

/**
 * Where connect-node's side of the server puts a way to reset the call's
 * response (RST_STREAM on HTTP/2, the socket on HTTP/1.1): a stream whose
 * consumer stopped reading cannot be told its status any other way.
 */
export const resetResponseKey = createContextKey<(() => void) | undefined>(undefined, { description: "bulwark reset response" });

/**
 * The call-duration bound of a pipeline: one coarse timer sweeps the calls
 * in flight, rather than a timer per call (arming and clearing a timer per
 * call measurably slowed the no-op benchmark). A call still running `maxMs`
 * after admission began — plus at most one tick, a twentieth of `maxMs`
 * capped at 1 s — is answered DEADLINE_EXCEEDED and its signal aborted, so
 * work that observes the signal stops. The timer is unref'd and stops when
 * no call is in flight.
 */
class CallDeadlines {
  readonly #maxMs: number;
  readonly #tickMs: number;
  readonly #calls = new Set<PendingCall>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(maxMs: number) {
    this.#maxMs = maxMs;
    this.#tickMs = Math.max(5, Math.min(1000, Math.floor(maxMs / 20)));
  }

  /** The bound of a piece of work that starts now (`maxMs` from now). */
  get maxMs(): number {
    return this.#maxMs;
  }

  /** Settles as `work` does, or rejects DEADLINE_EXCEEDED (aborting `hctx`) once `at` (epoch ms; default `maxMs` from now) has passed. */
  bound<T>(work: Promise<T>, hctx: HandlerContext, at = Date.now() + this.#maxMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call = this.watch(at, hctx, reject);
      work.then(
        (v) => {
          this.#calls.delete(call);
          resolve(v);
        },
        (e: unknown) => {
          this.#calls.delete(call);
          reject(e);
        },
      );
    });
  }

  /** Calls `expire` with DEADLINE_EXCEEDED (after aborting `hctx`) once `at` has passed, unless `unwatch`ed first. */
  watch(at: number, hctx: HandlerContext, expire: (reason: unknown) => void): PendingCall {
    const call: PendingCall = { at, hctx, reject: expire };
    this.#calls.add(call);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#sweep(), this.#tickMs);
      this.#timer.unref();
    }
    return call;
  }

  unwatch(call: PendingCall): void {
    this.#calls.delete(call);
  }

  #sweep(): void {
    const now = Date.now();
    for (const call of this.#calls) {
      if (call.at > now) continue;
      this.#calls.delete(call);
      const err = new ConnectError("the call did not finish in time", Code.DeadlineExceeded);
      (call.hctx as { abort?: (reason?: unknown) => void }).abort?.(err);
      call.reject(err);
    }
    if (this.#calls.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

/** The limiter's key prefix of each method, built once. */
const limiterKeys = new WeakMap<DescMethod, string>();

const requestIdPattern = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * The server-side interceptor chain, written once and run by every protocol
 * path (the gRPC fast path and connect-node for Connect and gRPC-Web):
 * request id → trace span → credential → tenant derivation → tenant gate →
 * authorization rule → edge validation → handler in the call context →
 * error mapping. Handlers therefore see a validated request and a context
 * whose tenant came from the credential, never from a header alone.
 */
export class CallPipeline {
  readonly #opts: CallPipelineOptions;
  readonly #deadlines: CallDeadlines | undefined;
  /** The sweep that bounds streams: the calls' own, or one for streams alone when only STREAM_TIMEOUT_MS is set. */
  readonly #streamDeadlines: CallDeadlines | undefined;

  constructor(opts: CallPipelineOptions) {
    this.#opts = opts;
    this.#deadlines = opts.callTimeoutMs === undefined ? undefined : new CallDeadlines(opts.callTimeoutMs);
    this.#streamDeadlines = this.#deadlines ?? (opts.streamTimeoutMs === undefined ? undefined : new CallDeadlines(opts.streamTimeoutMs));
  }

  /** Admits and runs one unary call; always rejects with a ConnectError. */
  async run<I extends DescMessage>(method: DescMethod, request: unknown, hctx: HandlerContext, next: () => Promise<unknown>): Promise<unknown> {
    const { requestId, parent, span } = this.#begin(method, hctx);
    let ctx: CallContext = { requestId };
    const started = performance.now();
    let code = "OK";
    const seen: Admission = {};
    try {
      const call = async (): Promise<unknown> => {
        ctx = await this.#admit(method, hctx.requestHeader, requestId, hctx.values.get(peerAddressKey), seen);
        validateMessage(method.input as I, request as never);
        return otelContext.with(trace.setSpan(parent, span), () => runWithContext(ctx, next));
      };
      // The bound covers admission too: a credential check waiting on a slow dependency counts.
      return await (this.#deadlines === undefined ? call() : this.#deadlines.bound(call(), hctx));
    } catch (err) {
      const ce = this.#failed(method, err, ctx, seen, span);
      code = Code[ce.code];
      throw ce;
    } finally {
      span.end();
      this.#opts.metrics?.observe(method, code, (performance.now() - started) / 1000);
    }
  }

  /**
   * Admits one server-streaming call and passes its messages through as
   * `produce` yields them: the call is checked once (credential, tenant,
   * gate, authorization, validation) when the first message is asked for;
   * then each message is pulled from the handler only when the transport
   * asks for the next one (connect-node asks after the previous one was
   * written and drained: backpressure), inside the call's context
   * (AsyncLocalStorage and trace span) every time. Errors are mapped as for
   * unary calls, before or after the first message; a failure mid-stream
   * ends the stream with the mapped code in its trailers.
   *
   * Time: admission and each message must each come within CALL_TIMEOUT_MS
   * (a handler stuck on one query is cut off as a unary call would be), and
   * the whole stream within STREAM_TIMEOUT_MS, however steadily messages
   * come; time the transport spends waiting for a slow consumer counts only
   * against the latter. Past either, the stream ends DEADLINE_EXCEEDED, the
   * call's signal is aborted and the handler's iterator is closed (its
   * `finally` runs). A consumer that stopped reading altogether is reset
   * CALL_TIMEOUT_MS after that.
   */
  stream<I extends DescMessage>(method: DescMethod, request: unknown, hctx: HandlerContext, produce: () => AsyncIterable<unknown>): AsyncIterableIterator<unknown> {
    const { requestId, parent, span } = this.#begin(method, hctx);
    const active = trace.setSpan(parent, span);
    const deadlines = this.#deadlines;
    const streamDeadlines = this.#streamDeadlines;
    const streamEnd = this.#opts.streamTimeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + this.#opts.streamTimeoutMs;
    const started = performance.now();
    const seen: Admission = {};
    let ctx: CallContext = { requestId };
    let inner: AsyncIterator<unknown> | undefined;
    let admitted = false;
    let finished = false;
    let pulling = false;
    let expired: ConnectError | undefined;
    let whole: PendingCall | undefined;
    let grace: ReturnType<typeof setTimeout> | undefined;
    const inCtx = <T>(fn: () => T): T => otelContext.with(active, () => runWithContext(ctx, fn));
    const finish = (code: string): void => {
      if (finished) return;
      finished = true;
      hctx.signal.removeEventListener("abort", onGone);
      if (whole !== undefined) streamDeadlines?.unwatch(whole);
      clearTimeout(grace);
      span.end();
      this.#opts.metrics?.observe(method, code, (performance.now() - started) / 1000);
    };
    /** Closes the handler's iterator so that its `finally` runs; never throws. */
    const close = (): void => {
      const it = inner;
      inner = undefined;
      if (it?.return === undefined) return;
      void inCtx(() => it.return!()).then(undefined, (err: unknown) => this.#opts.logger.debug({ requestId, rpc: `${method.parent.typeName}/${method.name}`, cause: describeError(err) }, "stream handler failed while closing"));
    };
    const fail = (err: unknown): ConnectError => {
      const ce = this.#failed(method, err, ctx, seen, span);
      close();
      finish(Code[ce.code]);
      return ce;
    };
    /** One step of the call within its bounds: CALL_TIMEOUT_MS from now, the stream's end, the caller's own deadline or cancellation. */
    const bounded = <T>(work: Promise<T>): Promise<T> => {
      let p = work;
      if (deadlines !== undefined) p = deadlines.bound(p, hctx, Math.min(Date.now() + deadlines.maxMs, streamEnd));
      else if (streamDeadlines !== undefined && streamEnd !== Number.POSITIVE_INFINITY) p = streamDeadlines.bound(p, hctx, streamEnd);
      const signal = hctx.signal;
      if (signal.aborted) return Promise.reject(abortReason(signal));
      return new Promise<T>((resolve, reject) => {
        const onAbort = (): void => reject(abortReason(signal));
        signal.addEventListener("abort", onAbort, { once: true });
        p.then(
          (v) => {
            signal.removeEventListener("abort", onAbort);
            resolve(v);
          },
          (e: unknown) => {
            signal.removeEventListener("abort", onAbort);
            reject(e);
          },
        );
      });
    };
    // The call ends while the transport waits on the consumer (a client that
    // reset the stream, the stream's bound): the handler is closed now, the
    // transport's next ask ends the stream with the reason, and if it never
    // asks (a write that cannot finish), the response is reset a grace later.
    const gone = (reason: ConnectError): void => {
      if (finished || pulling || !admitted || expired !== undefined) return;
      expired = reason;
      close();
      grace = setTimeout(() => {
        if (finished) return;
        hctx.values.get(resetResponseKey)?.();
        fail(reason);
      }, deadlines?.maxMs ?? 1000);
      grace.unref();
    };
    const onGone = (): void => gone(abortReason(hctx.signal));
    hctx.signal.addEventListener("abort", onGone, { once: true });
    if (streamDeadlines !== undefined && streamEnd !== Number.POSITIVE_INFINITY) {
      // The whole stream's bound, while the transport waits on the consumer
      // (a pull in progress has its own bound, which ends no later; the sweep
      // aborts the call's signal first, so `onGone` usually sees it first).
      whole = streamDeadlines.watch(streamEnd, hctx, (reason) => {
        whole = undefined;
        gone(ConnectError.from(reason));
      });
    }
    const iterator: AsyncIterableIterator<unknown> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async (): Promise<IteratorResult<unknown>> => {
        if (finished) return { done: true, value: undefined };
        if (expired !== undefined) throw fail(expired);
        pulling = true;
        try {
          if (!admitted) {
            ctx = await bounded(
              (async (): Promise<CallContext> => {
                const admittedCtx = await this.#admit(method, hctx.requestHeader, requestId, hctx.values.get(peerAddressKey), seen);
                validateMessage(method.input as I, request as never);
                return admittedCtx;
              })(),
            );
            admitted = true;
            inner = inCtx(() => produce()[Symbol.asyncIterator]());
          }
          const it = inner;
          if (it === undefined) throw expired ?? new ConnectError("the stream was closed", Code.Canceled);
          const r = await bounded(inCtx(() => it.next()));
          if (r.done === true) {
            inner = undefined;
            finish("OK");
            return { done: true, value: undefined };
          }
          return { done: false, value: r.value };
        } catch (err) {
          throw fail(err);
        } finally {
          pulling = false;
        }
      },
      // The transport stops early: the client went away, or a write failed.
      return: async (): Promise<IteratorResult<unknown>> => {
        close();
        finish(expired === undefined ? "Canceled" : Code[expired.code]);
        return { done: true, value: undefined };
      },
      throw: async (err: unknown): Promise<IteratorResult<unknown>> => {
        close();
        finish("Canceled");
        throw err;
      },
    };
    return iterator;
  }

  /** What every call starts with: its request id (echoed back) and its server span. */
  #begin(method: DescMethod, hctx: HandlerContext): { requestId: string; parent: ReturnType<typeof propagation.extract>; span: Span } {
    const headers = hctx.requestHeader;
    const supplied = headers.get(requestIdHeader);
    const requestId = supplied !== null && requestIdPattern.test(supplied) ? supplied : newRequestId();
    hctx.responseHeader.set(requestIdHeader, requestId);
    const parent = headers.has("traceparent") ? propagation.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
    const span = tracer().startSpan(`${method.parent.typeName}/${method.name}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": method.parent.typeName, "rpc.method": method.name } }, parent);
    return { requestId, parent, span };
  }

  /** Maps a failed call's error to what the caller is told, and logs and reports it. */
  #failed(method: DescMethod, err: unknown, ctx: CallContext, seen: Admission, span: Span): ConnectError {
    const ce = toConnectError(err, ctx.requestId);
    span.setStatus({ code: SpanStatusCode.ERROR, message: Code[ce.code] });
    this.#log(ctx, method, ce);
    if (this.#opts.refusals !== undefined && (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied)) {
      this.#opts.refusals.report({
        rpc: `${method.parent.typeName}/${method.name}`,
        code: Code[ce.code],
        tenantId: ctx.tenantId ?? seen.tenantId,
        principal: ctx.principal ?? seen.principal,
        clientIp: ctx.clientIp ?? seen.clientIp,
        reason: ce.rawMessage,
      });
    }
    return ce;
  }

  async #admit(method: DescMethod, headers: Headers, requestId: string, peer: string | undefined, seen: Admission = {}): Promise<CallContext> {
    const assertion = headers.get(serviceAssertionHeader);
    // The caller's address: the connection's peer (or a trusted proxy's client), or for a relayed call the address the calling service saw.
    let clientIp = this.#opts.clientAddresses === undefined ? normalizeAddress(peer) : this.#opts.clientAddresses.resolve(peer, headers);
    seen.clientIp = clientIp;
    let principal: Principal | undefined;
    let platformReason: string | undefined;
    let assertedTenant: string | undefined;
    if (assertion !== null) {
      const verified = await this.#opts.assertions.verify(assertion);
      principal = verified.context.principal;
      platformReason = verified.context.platformReason;
      assertedTenant = verified.context.tenantId;
      // A relayed call is the original caller's: when the assertion carries
      // that caller's address, it is the address, not the relaying service's.
      clientIp = verified.context.clientIp ?? clientIp;
    } else {
      if (this.#opts.publicRateLimit !== undefined && ruleOf(method)?.public === true) this.#limit(method, clientIp);
      try {
        principal = await resolvePrincipal(this.#opts.resolvers, headers);
      } catch (err) {
        // A public method serves anonymous callers: a stale or foreign
        // credential sent along (an expired token at sign-in) is ignored.
        if (ruleOf(method)?.public !== true) throw err;
      }
    }
    const requested = headers.get(tenantHeader) ?? undefined;
    seen.principal = principal;
    seen.clientIp = clientIp;
    seen.tenantId = principal?.tenantId;
    let tenantId: string | undefined;
    if (principal !== undefined && principal.tenantId !== undefined) {
      if (requested !== undefined && requested !== principal.tenantId) throw permissionDenied("the credential does not belong to the requested tenant");
      tenantId = principal.tenantId;
      this.#gate(tenantId, principal, clientIp);
    } else if (principal !== undefined && isPlatformPrincipal(principal)) {
      tenantId = requested ?? assertedTenant;
    }
    authorize(method, principal);
    const userAgent = headers.get("user-agent")?.slice(0, 256) || undefined;
    return { requestId, tenantId, principal, platformReason, clientIp, userAgent };
  }

  /**
   * The tenant gate for a tenant principal: refused while the tenants'
   * state has not loaded (UNAVAILABLE), when the tenant is suspended or
   * closing, and — for the tenant's own users and keys, not Bulwark services
   * acting on their own — from an address outside its allowlist.
   */
  #gate(tenantId: string, principal: Principal, clientIp: string | undefined): void {
    const gate = this.#opts.tenantGate;
    if (gate === undefined) return;
    if (!gate.ready) throw new ConnectError("the tenant gate is loading; retry", Code.Unavailable);
    if (gate.isBlocked(tenantId)) throw permissionDenied("the tenant is suspended or closing");
    if (principal.kind !== "service" && !gate.allows(tenantId, clientIp)) throw permissionDenied("the client address is not in the tenant's IP allowlist");
  }

  /** Counts a public call against its client address; RESOURCE_EXHAUSTED past the limit. */
  #limit(method: DescMethod, clientIp: string | undefined): void {
    let prefix = limiterKeys.get(method);
    if (prefix === undefined) limiterKeys.set(method, (prefix = `${method.parent.typeName}/${method.name} `));
    const waitMs = this.#opts.publicRateLimit!.take(prefix + addressBucket(clientIp));
    if (waitMs === 0) return;
    const seconds = Math.max(1, Math.ceil(waitMs / 1000));
    throw new ConnectError(`too many requests; retry in ${seconds} s`, Code.ResourceExhausted, { "retry-after": String(seconds) });
  }

  #log(ctx: CallContext, method: DescMethod, err: ConnectError): void {
    const fields = { requestId: ctx.requestId, tenantId: ctx.tenantId, principal: ctx.principal?.id, rpc: `${method.parent.typeName}/${method.name}`, code: Code[err.code] };
    if (err.code === Code.Internal || err.code === Code.Unknown || err.code === Code.DataLoss) {
      this.#opts.logger.error({ ...fields, cause: describeError(err.cause) }, "call failed");
    } else if (err.code === Code.Unavailable) {
      this.#opts.logger.warn({ ...fields, cause: describeError(err.cause) }, "dependency unavailable");
    } else {
      this.#opts.logger.debug(fields, "call refused");
    }
  }
}

/** Why a call's signal was aborted, as the caller is told it (a client's own deadline, a cancellation, the server's bound). */
function abortReason(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was cancelled", Code.Canceled);
}
