import type { DescFile, DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { health, reflectionV1, reflectionV1alpha } from "@bulwark/contracts";
import { describeError, type Logger } from "@bulwark/core";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import { connectNodeHandler } from "./connect-handler.js";
import { GrpcFastPath, type UnaryRoute } from "./grpc-fast-path.js";
import { healthService, type HealthStatus } from "./health.js";
import type { CallPipeline } from "./pipeline.js";
import { ReflectionIndex, reflectionServiceV1, reflectionServiceV1alpha } from "./reflection.js";

/** A service implementation to host, with its descriptor. */
export interface ServiceRegistration {
  readonly service: DescService;
  readonly impl: Partial<ServiceImpl<DescService>>;
  /** The file that declares the service, for reflection. */
  readonly file: DescFile;
}

/**
 * A plain HTTP GET resource served beside the RPCs on the same port, such as
 * identity's `/.well-known/jwks.json`. It takes no credential: serve only
 * what is public. It sees the request's Accept header (content negotiation).
 */
export type HttpRoute = (request: { readonly accept: string | undefined }) => Promise<{ readonly contentType: string; readonly body: string; readonly maxAgeSeconds?: number }>;

/**
 * What one connection or request may take of the server, enforced on every
 * protocol before any credential is looked at.
 */
export interface ServerLimits {
  /** The largest request message, after decompression. */
  readonly maxMessageBytes: number;
  /** Streams (calls) in flight on one HTTP/2 connection. */
  readonly maxConcurrentStreams: number;
  /** The largest header block of a request, on HTTP/2 and HTTP/1.1. */
  readonly maxHeaderBytes: number;
  /** Time for a new connection's first bytes, and for an HTTP/1.1 request's headers. */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole HTTP/1.1 request. */
  readonly requestTimeoutMs: number;
  /** How long an idle HTTP/1.1 keep-alive connection stays open. */
  readonly keepAliveTimeoutMs: number;
  /** How long an HTTP/2 connection without any traffic stays open (then GOAWAY). */
  readonly idleTimeoutMs: number;
}

/**
 * The limits of a BulwarkServer unless told otherwise: 4 MiB messages (gRPC's
 * own default), 100 streams per connection, 32 KiB of headers (an access
 * token with a long permission list fits), 10 s for headers, 30 s for an
 * HTTP/1.1 request, 65 s keep-alive (longer than the 60 s idle timeout of
 * common load balancers, so they close first), 120 s idle HTTP/2.
 */
export const defaultServerLimits: ServerLimits = {
  maxMessageBytes: 4 * 1024 * 1024,
  maxConcurrentStreams: 100,
  maxHeaderBytes: 32 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 65_000,
  idleTimeoutMs: 120_000,
};

/** How to build a BulwarkServer. */
export interface BulwarkServerOptions {
  readonly services: readonly ServiceRegistration[];
  /** GET resources by exact path. */
  readonly httpRoutes?: Readonly<Record<string, HttpRoute>>;
  readonly pipeline: CallPipeline;
  readonly health: HealthStatus;
  readonly logger: Logger;
  /** Overrides of `defaultServerLimits`. */
  readonly limits?: Partial<ServerLimits>;
}

type AnyUnary = (req: unknown, ctx: HandlerContext) => unknown;

/**
 * One port that speaks gRPC, Connect and gRPC-Web, over HTTP/2 without TLS
 * (h2c, prior knowledge) and over HTTP/1.1 (Connect and gRPC-Web from
 * browsers and curl), telling them apart by the first bytes of each
 * connection. Unary gRPC calls take the fast path; everything else goes
 * through connect-node. Both run the same CallPipeline and the same service
 * implementations. It also serves grpc.health.v1 and gRPC reflection.
 */
export class BulwarkServer {
  readonly #opts: BulwarkServerOptions;
  readonly #fast: GrpcFastPath;
  readonly #net: net.Server;
  readonly #h2: http2.Http2Server;
  readonly #h1: http.Server;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #sockets = new Set<net.Socket>();
  readonly #h1Active = new WeakMap<net.Socket, number>();
  readonly #peers = new WeakMap<http2.Http2Session, string | undefined>();
  readonly #limits: ServerLimits;
  #closing = false;

  constructor(opts: BulwarkServerOptions) {
    this.#opts = opts;
    const limits = (this.#limits = { ...defaultServerLimits, ...opts.limits });
    const routes: UnaryRoute[] = [];
    const wrapped = opts.services.map((reg) => ({ reg, impl: this.#wrap(reg, routes) }));
    this.#fast = new GrpcFastPath(routes, limits.maxMessageBytes);
    const index = new ReflectionIndex(
      [...opts.services.map((s) => s.file), health.file_health_v1_health, reflectionV1.file_grpc_reflection_v1_reflection, reflectionV1alpha.file_grpc_reflection_v1alpha_reflection],
      [...opts.services.map((s) => s.service.typeName), health.Health.typeName, reflectionV1.ServerReflection.typeName, reflectionV1alpha.ServerReflection.typeName],
    );
    const httpRoutes = opts.httpRoutes ?? {};
    const connectHandler = connectNodeHandler({
      readMaxBytes: limits.maxMessageBytes,
      logger: opts.logger,
      fallback: (req, res) => {
        const route = req.method === "GET" ? httpRoutes[(req.url ?? "").split("?")[0] ?? ""] : undefined;
        if (route === undefined) {
          res.writeHead(404, { "content-type": "text/plain" });
          res.end("not found");
          return;
        }
        route({ accept: req.headers.accept }).then(
          (r) => {
            res.writeHead(200, { "content-type": r.contentType, "cache-control": `public, max-age=${r.maxAgeSeconds ?? 60}` });
            res.end(r.body);
          },
          (err: unknown) => {
            opts.logger.error({ err: describeError(err), path: req.url }, "http route failed");
            res.writeHead(500, { "content-type": "text/plain" });
            res.end("internal error");
          },
        );
      },
      routes: (router: ConnectRouter) => {
        for (const { reg, impl } of wrapped) router.service(reg.service, impl);
        router.service(health.Health, healthService(opts.health));
        router.service(reflectionV1.ServerReflection, reflectionServiceV1(index));
        router.service(reflectionV1alpha.ServerReflection, reflectionServiceV1alpha(index));
      },
    });
    this.#h2 = http2.createServer({
      // nghttp2's own buffers per connection, in MB (node's default is 10);
      // measured: 32 calls in flight on one connection need more.
      maxSessionMemory: 64,
      maxHeaderListPairs: 128,
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    });
    this.#h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      // node advertises maxHeaderListSize but does not enforce it on what it
      // receives (HTTP/1.1's maxHeaderSize is enforced by its parser).
      if (headerBytes(rawHeaders) > limits.maxHeaderBytes) {
        stream.on("error", () => undefined);
        stream.respond({ ":status": 431 }, { endStream: true });
        return;
      }
      const route = this.#fast.match(headers);
      if (route !== undefined) this.#fast.serve(route, stream, headers, this.#peers.get(stream.session!));
      else compat(this.#h2, connectHandler, stream, headers, rawHeaders);
    });
    this.#h2.on("session", (session: http2.ServerHttp2Session) => {
      this.#sessions.add(session);
      this.#peers.set(session, session.socket.remoteAddress);
      // A connection with no traffic at all for this long is told GOAWAY;
      // calls still running on it finish.
      session.setTimeout(limits.idleTimeoutMs, () => session.close());
      session.once("close", () => this.#sessions.delete(session));
    });
    this.#h1 = http.createServer({
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      connectionsCheckingInterval: Math.min(5_000, limits.headersTimeoutMs),
    }, (req, res) => {
      // HTTP/1.1 keep-alive sockets reach this server through emit("connection"),
      // so its own idle-connection tracking never sees them: count requests per
      // socket here, and close a socket when its last request ends after close().
      const socket = req.socket;
      this.#h1Active.set(socket, (this.#h1Active.get(socket) ?? 0) + 1);
      if (this.#closing) res.setHeader("connection", "close");
      res.once("close", () => {
        const left = (this.#h1Active.get(socket) ?? 1) - 1;
        this.#h1Active.set(socket, left);
        if (left === 0 && this.#closing) socket.destroy();
      });
      connectHandler(req, res);
    });
    this.#net = net.createServer({ pauseOnConnect: true }, (socket) => this.#route(socket));
  }

  /** Wraps every method of a service in the pipeline; collects unary routes. */
  #wrap(reg: ServiceRegistration, routes: UnaryRoute[]): Partial<ServiceImpl<DescService>> {
    const impl: Record<string, AnyUnary> = {};
    for (const method of reg.service.methods) {
      const fn = (reg.impl as Record<string, AnyUnary | undefined>)[method.localName];
      if (fn === undefined) continue;
      if (method.methodKind === "server_streaming") {
        // Server streaming (audit's ExportEntries, compliance's DownloadExport): the pipeline checks the
        // call once, then passes each message on as the handler yields it (see CallPipeline.stream).
        const stream = (fn as unknown as (req: unknown, hctx: HandlerContext) => AsyncIterable<unknown>).bind(reg.impl);
        const pipeline = this.#opts.pipeline;
        (impl as Record<string, unknown>)[method.localName] = (req: unknown, hctx: HandlerContext): AsyncIterable<unknown> => pipeline.stream(method as DescMethod, req, hctx, () => stream(req, hctx));
        continue;
      }
      if (method.methodKind !== "unary") throw new Error(`${method.name}: only unary and server-streaming methods are supported by the pipeline`);
      const bound = fn.bind(reg.impl);
      const invoke = (req: unknown, hctx: HandlerContext): Promise<unknown> => this.#opts.pipeline.run(method as DescMethod, req, hctx, async () => bound(req, hctx));
      impl[method.localName] = invoke;
      routes.push({ service: reg.service, method, invoke });
    }
    return impl as unknown as Partial<ServiceImpl<DescService>>;
  }

  /** Hands a new connection to the HTTP/2 or the HTTP/1.1 server. */
  #route(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    socket.once("error", () => socket.destroy());
    // A connection that never says which protocol it speaks is closed.
    const silent = (): void => void socket.destroy();
    socket.setTimeout(this.#limits.headersTimeoutMs, silent);
    // Read in paused mode and put the bytes back: the HTTP/2 and HTTP/1
    // servers then find them in the socket's buffer. (Reading in flowing mode
    // loses them for HTTP/2, which consumes the native handle directly.)
    const onReadable = (): void => {
      const head = socket.read() as Buffer | null;
      if (head === null) return;
      socket.off("readable", onReadable);
      socket.setTimeout(0);
      socket.off("timeout", silent);
      socket.unshift(head);
      const h2 = head.length >= 3 && head.toString("latin1", 0, 3) === "PRI";
      if (!h2) this.#h1Active.set(socket, 0);
      (h2 ? this.#h2 : this.#h1).emit("connection", socket);
    };
    socket.on("readable", onReadable);
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#net.once("error", reject);
      this.#net.listen({ port, host }, () => {
        this.#net.off("error", reject);
        // node's HTTP/1.1 server enforces headersTimeout and requestTimeout
        // from a connection list it sets up when it starts listening; this
        // one never listens (its connections come from the socket above),
        // so it is told it is. A test proves slow headers are cut off.
        this.#h1.emit("listening");
        resolve((this.#net.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Graceful stop: refuses new connections, lets in-flight calls finish
   * (HTTP/2 GOAWAY), ends long-lived streams, and after `graceMs` destroys
   * whatever is left.
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
    for (const s of this.#sessions) s.close();
    for (const socket of this.#sockets) {
      // Idle HTTP/1.1 keep-alive sockets end now; busy ones after their request.
      if (this.#h1Active.get(socket) === 0) socket.destroy();
    }
    const deadline = setTimeout(() => {
      this.#fast.abortAll(new ConnectError("server is shutting down", Code.Unavailable));
      for (const s of this.#sessions) s.destroy();
      for (const s of this.#sockets) s.destroy();
    }, graceMs);
    deadline.unref();
    await closed;
    clearTimeout(deadline);
    this.#h1.close(() => undefined);
  }
}

/** The size of a request's header block as HTTP/2 counts it (names, values, 32 bytes each). */
function headerBytes(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i++) n += rawHeaders[i]!.length;
  return n + 16 * rawHeaders.length;
}

/**
 * Serves one HTTP/2 stream through connect-node's request handler, building
 * the same compatibility request/response pair node's http2 server builds
 * for its "request" event.
 */
function compat(server: http2.Http2Server, handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[]): void {
  const Request = http2.Http2ServerRequest as unknown as new (s: Duplex, h: unknown, o: unknown, r: string[]) => http2.Http2ServerRequest;
  const Response = http2.Http2ServerResponse as unknown as new (s: Duplex) => http2.Http2ServerResponse;
  void server;
  handler(new Request(stream, headers, undefined, rawHeaders), new Response(stream));
}
