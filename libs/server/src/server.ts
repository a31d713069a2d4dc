import type { DescFile, DescMethod, DescService } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { health, reflectionV1, reflectionV1alpha } from "@bulwark/contracts";
import { describeError, type Logger } from "@bulwark/core";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Duplex } from "node:stream";
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

/** How to build a BulwarkServer. */
export interface BulwarkServerOptions {
  readonly services: readonly ServiceRegistration[];
  /** GET resources by exact path. */
  readonly httpRoutes?: Readonly<Record<string, HttpRoute>>;
  readonly pipeline: CallPipeline;
  readonly health: HealthStatus;
  readonly logger: Logger;
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
  #closing = false;

  constructor(opts: BulwarkServerOptions) {
    this.#opts = opts;
    const routes: UnaryRoute[] = [];
    const wrapped = opts.services.map((reg) => ({ reg, impl: this.#wrap(reg, routes) }));
    this.#fast = new GrpcFastPath(routes);
    const index = new ReflectionIndex(
      [...opts.services.map((s) => s.file), health.file_health_v1_health, reflectionV1.file_grpc_reflection_v1_reflection, reflectionV1alpha.file_grpc_reflection_v1alpha_reflection],
      [...opts.services.map((s) => s.service.typeName), health.Health.typeName, reflectionV1.ServerReflection.typeName, reflectionV1alpha.ServerReflection.typeName],
    );
    const httpRoutes = opts.httpRoutes ?? {};
    const connectHandler = connectNodeAdapter({
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
    this.#h2 = http2.createServer({ maxSessionMemory: 64 });
    this.#h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      const route = this.#fast.match(headers);
      if (route !== undefined) this.#fast.serve(route, stream, headers);
      else compat(this.#h2, connectHandler, stream, headers, rawHeaders);
    });
    this.#h2.on("session", (session) => {
      this.#sessions.add(session);
      session.once("close", () => this.#sessions.delete(session));
    });
    this.#h1 = http.createServer((req, res) => {
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
      if (method.methodKind !== "unary") throw new Error(`${method.name}: only unary methods are supported by the pipeline`);
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
    // Read in paused mode and put the bytes back: the HTTP/2 and HTTP/1
    // servers then find them in the socket's buffer. (Reading in flowing mode
    // loses them for HTTP/2, which consumes the native handle directly.)
    const onReadable = (): void => {
      const head = socket.read() as Buffer | null;
      if (head === null) return;
      socket.off("readable", onReadable);
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
  }
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
