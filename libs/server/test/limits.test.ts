/**
 * What one request or connection may take of a server, on a real server
 * listening on a port: messages bounded after decompression, oversized
 * gRPC messages refused while they are still arriving, streams per
 * connection, header and idle timeouts, and a bound in time for every call.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { DiagnosticsService, file_bulwark_diagnostics_v1alpha1_diagnostics_service, PingRequestSchema } from "@bulwark/contracts";
import { BootstrapCredentialResolver, createLogger, ServiceAssertions } from "@bulwark/core";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as zlib from "node:zlib";
import { BulwarkServer, CallPipeline, diagnosticsRegistration, HealthStatus, type ServerLimits, type ServiceRegistration } from "../src/index.js";

const logger = createLogger("test", "silent");
const pingPath = `/${DiagnosticsService.typeName}/Ping`;

async function startServer(opts: { limits?: Partial<ServerLimits>; callTimeoutMs?: number; services?: ServiceRegistration[] } = {}): Promise<{ server: BulwarkServer; port: number; baseUrl: string }> {
  const server = new BulwarkServer({
    services: opts.services ?? [diagnosticsRegistration],
    pipeline: new CallPipeline({ resolvers: [new BootstrapCredentialResolver("unit-test-bootstrap-token-0123")], assertions: ServiceAssertions.development("test"), logger, callTimeoutMs: opts.callTimeoutMs }),
    health: new HealthStatus([DiagnosticsService.typeName]),
    logger,
    ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
  });
  const port = await server.listen(0, "127.0.0.1");
  return { server, port, baseUrl: `http://127.0.0.1:${port}` };
}

/** A gzip stream of `mb` MiB of zeros, built without holding them in memory (about 1 KB per MiB). */
async function gzipBomb(mb: number): Promise<Buffer> {
  const gz = zlib.createGzip({ level: 9 });
  const out: Buffer[] = [];
  gz.on("data", (c: Buffer) => out.push(c));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < mb; i++) if (!gz.write(zeros)) await new Promise((r) => gz.once("drain", r));
  await new Promise((r) => gz.end(r));
  return Buffer.concat(out);
}

function envelope(flags: number, data: Uint8Array): Buffer {
  const b = Buffer.alloc(data.length + 5);
  b[0] = flags;
  b.writeUInt32BE(data.length, 1);
  b.set(data, 5);
  return b;
}

/** The gRPC-Web trailer frame of a response body, as headers. */
function grpcWebTrailer(body: Buffer): Record<string, string> {
  let offset = 0;
  while (offset + 5 <= body.length) {
    const flags = body[offset]!;
    const length = body.readUInt32BE(offset + 1);
    if ((flags & 0x80) !== 0) {
      const text = body.subarray(offset + 5, offset + 5 + length).toString("utf8");
      return Object.fromEntries(text.split("\r\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    }
    offset += 5 + length;
  }
  return {};
}

describe("request size", { timeout: 30_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  let bomb: Buffer;
  before(async () => {
    srv = await startServer();
    bomb = await gzipBomb(400);
  });
  after(() => srv.server.close(500));

  test("a 400 KB gzip bomb over Connect and gRPC-Web is RESOURCE_EXHAUSTED, and the server's memory barely moves", async () => {
    assert.ok(bomb.length < 600 * 1024, `the bomb is ${bomb.length} bytes`);
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 3; i++) {
      const connect = await fetch(`${srv.baseUrl}${pingPath}`, { method: "POST", headers: { "content-type": "application/proto", "content-encoding": "gzip", "connect-protocol-version": "1" }, body: bomb });
      assert.equal(connect.status, 429);
      assert.equal(((await connect.json()) as { code: string }).code, "resource_exhausted");

      const web = await fetch(`${srv.baseUrl}${pingPath}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip", "x-grpc-web": "1" }, body: envelope(1, bomb) });
      assert.equal(grpcWebTrailer(Buffer.from(await web.arrayBuffer()))["grpc-status"], String(Code.ResourceExhausted));
    }
    const grown = (process.memoryUsage().rss - before) / 1024 / 1024;
    assert.ok(grown < 100, `RSS grew by ${grown.toFixed(0)} MB`);
  });

  test("a gzip bomb over gRPC is RESOURCE_EXHAUSTED too", async () => {
    const session = http2.connect(srv.baseUrl);
    try {
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": pingPath, "content-type": "application/grpc", "grpc-encoding": "gzip", te: "trailers" });
        let status: string | undefined;
        req.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
        req.on("trailers", (t) => (status ??= t["grpc-status"] as string | undefined));
        req.on("data", () => undefined);
        req.on("close", () => resolve(status));
        req.on("error", reject);
        req.end(envelope(1, bomb));
      });
      assert.equal(status, String(Code.ResourceExhausted));
    } finally {
      session.close();
    }
  });

  test("an oversized gRPC message on the fast path is refused while it is still being sent", async () => {
    const session = http2.connect(srv.baseUrl);
    try {
      const result = await new Promise<{ status: string | undefined; rst: number }>((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": pingPath, "content-type": "application/grpc", te: "trailers" });
        let status: string | undefined;
        req.on("response", (h) => (status = h["grpc-status"] as string | undefined));
        req.on("data", () => undefined);
        req.on("error", reject);
        req.on("close", () => resolve({ status, rst: req.rstCode ?? -1 }));
        // The prefix announces 5 MiB; only 64 KiB follow, and the stream is never ended.
        const head = Buffer.alloc(5);
        head.writeUInt32BE(5 * 1024 * 1024, 1);
        req.write(Buffer.concat([head, Buffer.alloc(64 * 1024)]));
      });
      assert.equal(result.status, String(Code.ResourceExhausted));
      assert.equal(result.rst, http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      session.close();
    }
  });

  test("the server still answers after refusing oversized messages", async () => {
    const res = await createClient(DiagnosticsService, createGrpcTransport({ baseUrl: srv.baseUrl })).ping({ payload: new Uint8Array([7]) });
    assert.deepEqual([...res.payload], [7]);
  });

  test("headers beyond 32 KiB are refused on HTTP/2 and HTTP/1.1", async () => {
    const session = http2.connect(srv.baseUrl);
    try {
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": pingPath, "content-type": "application/grpc", te: "trailers", "x-big": "a".repeat(40_000) });
        req.on("response", (h) => resolve(h[":status"]));
        req.on("error", reject);
        req.end();
      });
      assert.equal(status, 431);
    } finally {
      session.close();
    }
    assert.equal((await fetch(`${srv.baseUrl}${pingPath}`, { method: "POST", headers: { "content-type": "application/json", "x-big": "a".repeat(40_000) }, body: "{}" })).status, 431);
  });

  test("an HTTP/2 client is told at most 100 concurrent streams per connection", async () => {
    const session = http2.connect(srv.baseUrl);
    try {
      await new Promise((r) => session.once("remoteSettings", r));
      assert.equal(session.remoteSettings.maxConcurrentStreams, 100);
    } finally {
      session.close();
    }
  });
});

describe("connection timeouts", { timeout: 30_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    srv = await startServer({ limits: { headersTimeoutMs: 500, requestTimeoutMs: 1000, idleTimeoutMs: 500 } });
  });
  after(() => srv.server.close(500));

  function closed(socket: net.Socket): Promise<string> {
    let received = "";
    socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
    socket.on("error", () => undefined);
    return new Promise((resolve) => socket.once("close", () => resolve(received)));
  }

  test("a slowloris HTTP/1.1 connection that never finishes its headers is closed", async () => {
    const socket = net.connect(srv.port, "127.0.0.1");
    const done = closed(socket);
    socket.write(`POST ${pingPath} HTTP/1.1\r\nHost: x\r\n`);
    const drip = setInterval(() => socket.write("X-Slow: still here\r\n"), 100);
    try {
      const received = await done;
      assert.match(received, /^HTTP\/1\.1 408/);
    } finally {
      clearInterval(drip);
    }
  });

  test("a connection that never sends a byte is closed", async () => {
    const socket = net.connect(srv.port, "127.0.0.1");
    assert.equal(await closed(socket), "");
  });

  test("an idle HTTP/2 connection is sent GOAWAY", async () => {
    const session = http2.connect(srv.baseUrl);
    session.on("error", () => undefined);
    await new Promise((resolve) => session.once("goaway", resolve));
    session.destroy();
  });
});

describe("call duration", { timeout: 30_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  let aborted = 0;
  before(async () => {
    const slow: ServiceRegistration = {
      service: DiagnosticsService,
      file: file_bulwark_diagnostics_v1alpha1_diagnostics_service,
      impl: {
        ping: async (_req: unknown, ctx: HandlerContext) => {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 5_000);
            ctx.signal.addEventListener("abort", () => {
              aborted++;
              clearTimeout(t);
              resolve();
            });
          });
          return { payload: new Uint8Array() };
        },
      } as never,
    };
    srv = await startServer({ callTimeoutMs: 200, services: [slow] });
  });
  after(() => srv.server.close(500));

  test("a call that runs past the server's bound answers DEADLINE_EXCEEDED on every protocol, and its signal is aborted", async () => {
    for (const transport of [createGrpcTransport({ baseUrl: srv.baseUrl }), createConnectTransport({ baseUrl: srv.baseUrl, httpVersion: "1.1" }), createGrpcWebTransport({ baseUrl: srv.baseUrl, httpVersion: "1.1" })]) {
      await assert.rejects(createClient(DiagnosticsService, transport).ping({ payload: toBinary(PingRequestSchema, create(PingRequestSchema)) }), (e: unknown) => e instanceof ConnectError && e.code === Code.DeadlineExceeded);
    }
    assert.equal(aborted, 3);
  });
});
