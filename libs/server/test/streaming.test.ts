/**
 * Server-streaming calls through the pipeline, on a real server: checked
 * once, then passed through message by message as the handler yields them
 * (not buffered), inside the call's context, with backpressure, with errors
 * mapped mid-stream as before it, and bounded in time. The handler is a
 * stand-in for audit's ExportEntries, registered on its real descriptor.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import * as http2 from "node:http2";
import { Code, ConnectError, createClient, type HandlerContext, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AuditLogService, ExportedEntrySchema, ExportEntriesRequestSchema, ExportEntriesResponseSchema, file_bulwark_audit_v1_audit_log_service, type ExportEntriesRequest, type ExportEntriesResponse } from "@bulwark/contracts";
import { BootstrapCredentialResolver, createLogger, currentContext, notFound, ServiceAssertions } from "@bulwark/core";
import { BulwarkServer, CallPipeline, HealthStatus, type ServerLimits, type ServiceRegistration } from "../src/index.js";

const logger = createLogger("test", "silent");
const token = "unit-test-bootstrap-token-0123";
const auth = { authorization: `Bearer ${token}` };

/** What a test tells the stand-in handler to do, by the tenant id it asks for. */
interface Script {
  /** Resolved by the test once it has received the first message. */
  gate?: Promise<void>;
  /** Entries to send after the gate (each `bytes` long). */
  entries?: number;
  bytes?: number;
  /** What to throw after the first entry. */
  fail?: () => unknown;
  /** Wait this long between entries (ms), for the stream-bound test. */
  everyMs?: number;
  /** Produce no second message until the call's signal is aborted. */
  hang?: boolean;
}

const scripts = new Map<string, Script>();
/** Per tenant id: what the handler saw of the call context, and whether its `finally` ran. */
const observed = new Map<string, { contexts: (string | undefined)[]; requestIds: (string | undefined)[]; produced: number; closed: boolean; onClosed: Promise<void> }>();

function observe(tenantId: string): NonNullable<ReturnType<typeof observed.get>> {
  let done!: () => void;
  const o = { contexts: [] as (string | undefined)[], requestIds: [] as (string | undefined)[], produced: 0, closed: false, onClosed: new Promise<void>((r) => (done = r)) };
  observed.set(tenantId, o);
  (o as { markClosed?: () => void }).markClosed = done;
  return o;
}

const entry = (i: number, bytes: number): ExportEntriesResponse => create(ExportEntriesResponseSchema, { item: { case: "entry", value: create(ExportedEntrySchema, { leafIndex: BigInt(i), entryId: `aud_${i}`, leaf: new Uint8Array(bytes) }) } });

const standIn: ServiceRegistration = {
  service: AuditLogService,
  file: file_bulwark_audit_v1_audit_log_service,
  impl: {
    async *exportEntries(req: ExportEntriesRequest, hctx: HandlerContext): AsyncIterable<ExportEntriesResponse> {
      const script = scripts.get(req.tenantId) ?? {};
      const o = observed.get(req.tenantId) ?? observe(req.tenantId);
      const see = (): void => {
        o.contexts.push(currentContext()?.principal?.id);
        o.requestIds.push(currentContext()?.requestId);
      };
      try {
        see();
        yield create(ExportEntriesResponseSchema, { item: { case: "checkpoint", value: "checkpoint" } });
        await script.gate;
        see();
        // Stuck until the call's signal says it is over (as a query would be until the pipeline gives up on it).
        if (script.hang === true) await new Promise((r) => hctx.signal.addEventListener("abort", r, { once: true }));
        for (let i = 0; i < (script.entries ?? 1); i++) {
          if (script.everyMs !== undefined) await new Promise((r) => setTimeout(r, script.everyMs));
          o.produced++;
          yield entry(i, script.bytes ?? 8);
          see();
          if (script.fail !== undefined) throw script.fail();
        }
      } finally {
        o.closed = true;
        (o as { markClosed?: () => void }).markClosed?.();
      }
    },
  } as unknown as ServiceRegistration["impl"],
};

async function startServer(opts: { callTimeoutMs?: number; streamTimeoutMs?: number; limits?: Partial<ServerLimits> } = {}): Promise<{ server: BulwarkServer; baseUrl: string }> {
  const server = new BulwarkServer({
    services: [standIn],
    pipeline: new CallPipeline({ resolvers: [new BootstrapCredentialResolver(token)], assertions: ServiceAssertions.development("test"), logger, callTimeoutMs: opts.callTimeoutMs, streamTimeoutMs: opts.streamTimeoutMs }),
    health: new HealthStatus([AuditLogService.typeName]),
    logger,
    ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
  });
  const port = await server.listen(0, "127.0.0.1");
  return { server, baseUrl: `http://127.0.0.1:${port}` };
}

function transports(baseUrl: string): [string, Transport][] {
  return [
    ["gRPC", createGrpcTransport({ baseUrl })],
    ["Connect over HTTP/2", createConnectTransport({ baseUrl, httpVersion: "2" })],
    ["Connect over HTTP/1.1", createConnectTransport({ baseUrl, httpVersion: "1.1" })],
    ["gRPC-Web", createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
  ];
}

let n = 0;
/** A fresh tenant id for one call, so scripts and observations do not mix. */
const tenant = (): string => `ten_stream${++n}`;

describe("a server-streaming call", { timeout: 60_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  before(async () => (srv = await startServer({ callTimeoutMs: 10_000 })));
  after(() => srv.server.close(500));

  test("delivers its first message while the handler is still producing, on every protocol, inside the call's context", async () => {
    for (const [name, transport] of transports(srv.baseUrl)) {
      const id = tenant();
      let release!: () => void;
      scripts.set(id, { gate: new Promise<void>((r) => (release = r)), entries: 3 });
      const o = observe(id);
      const got: string[] = [];
      for await (const msg of createClient(AuditLogService, transport).exportEntries({ tenantId: id }, { headers: auth })) {
        got.push(msg.item.case ?? "");
        if (got.length === 1) {
          // The handler is blocked on the gate until now: this message cannot have been buffered behind the rest.
          assert.equal(o.produced, 0, name);
          assert.equal(o.closed, false, name);
          release();
        }
      }
      assert.deepEqual(got, ["checkpoint", "entry", "entry", "entry"], name);
      assert.equal(o.closed, true, name);
      // The call's context (principal, request id) holds at every step, after awaits and between pulls.
      assert.deepEqual(new Set(o.contexts), new Set(["bootstrap"]), name);
      assert.equal(new Set(o.requestIds).size, 1, name);
      assert.match(String(o.requestIds[0]), /^req_/, name);
    }
  });

  test("that fails mid-stream ends with INTERNAL and no detail of the failure, after the messages sent before it", async () => {
    for (const [name, transport] of transports(srv.baseUrl)) {
      const id = tenant();
      scripts.set(id, { entries: 3, fail: () => new Error('relation "entries" does not exist: select leaf from entries where tenant_id = $1') });
      const got: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const msg of createClient(AuditLogService, transport).exportEntries({ tenantId: id }, { headers: auth })) got.push(msg.item.case ?? "");
        })(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Internal && /^internal error \(request req_/.test(e.rawMessage) && !/select|entries|relation/.test(e.rawMessage),
        name,
      );
      assert.deepEqual(got, ["checkpoint", "entry"], name);
      assert.equal(observed.get(id)?.closed, true, name);
    }
  });

  test("that fails mid-stream with a ConnectError keeps its code and message", async () => {
    for (const [name, transport] of transports(srv.baseUrl)) {
      const id = tenant();
      scripts.set(id, { entries: 3, fail: () => notFound("audit entry") });
      const got: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const msg of createClient(AuditLogService, transport).exportEntries({ tenantId: id }, { headers: auth })) got.push(msg.item.case ?? "");
        })(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound && e.rawMessage === notFound("audit entry").rawMessage,
        name,
      );
      assert.deepEqual(got, ["checkpoint", "entry"], name);
    }
  });

  test("is refused before the handler runs when the credential is missing, or the request invalid", async () => {
    for (const [name, transport] of transports(srv.baseUrl)) {
      const id = tenant();
      const client = createClient(AuditLogService, transport);
      await assert.rejects(client.exportEntries({ tenantId: id })[Symbol.asyncIterator]().next(), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated, name);
      await assert.rejects(client.exportEntries({ tenantId: "x".repeat(65) }, { headers: auth })[Symbol.asyncIterator]().next(), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && e.rawMessage.startsWith("tenant_id"), name);
      assert.equal(observed.has(id), false, name);
    }
  });

  test("is produced only as fast as the client reads (backpressure), and a client that goes away closes the handler", async () => {
    const id = tenant();
    // 2,000 messages of 32 KiB: 64 MiB if the server produced ahead of the client.
    scripts.set(id, { entries: 2000, bytes: 32 * 1024 });
    const o = observe(id);
    // A raw HTTP/2 client that reads the response headers and then nothing:
    // its flow-control window (64 KiB) is never reopened.
    const session = http2.connect(srv.baseUrl);
    const body = toBinary(ExportEntriesRequestSchema, create(ExportEntriesRequestSchema, { tenantId: id }));
    const frame = Buffer.alloc(body.length + 5);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const req = session.request({ ":method": "POST", ":path": `/${AuditLogService.typeName}/ExportEntries`, "content-type": "application/grpc", te: "trailers", ...auth });
    req.on("error", () => undefined);
    const first = new Promise<void>((resolve) => req.once("data", () => resolve()));
    req.end(frame);
    await first;
    req.pause();
    // Give the server every chance to run ahead: the write path waits for
    // the stream to drain, so it stays within a few windows' worth.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(o.produced < 64, `the handler produced ${o.produced} messages for a client that read at most 2`);
    req.close(http2.constants.NGHTTP2_CANCEL);
    await o.onClosed;
    assert.equal(o.closed, true);
    session.close();
  });
});

describe("a server-streaming call's time bound", { timeout: 60_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  before(async () => (srv = await startServer({ callTimeoutMs: 300, streamTimeoutMs: 1_500 })));
  after(() => srv.server.close(500));

  test("cuts a handler that takes longer than the call bound to produce one message: DEADLINE_EXCEEDED after the messages before, its signal aborted and the handler closed", async () => {
    for (const [name, transport] of transports(srv.baseUrl)) {
      const id = tenant();
      scripts.set(id, { hang: true });
      const o = observe(id);
      const got: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const msg of createClient(AuditLogService, transport).exportEntries({ tenantId: id }, { headers: auth })) got.push(msg.item.case ?? "");
        })(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.DeadlineExceeded,
        name,
      );
      assert.deepEqual(got, ["checkpoint"], name);
      await o.onClosed;
    }
  });

  test("lets a stream run longer than the call bound while messages keep coming, and ends it at the stream bound", async () => {
    const id = tenant();
    // One message every 100 ms, for longer than the 1.5 s stream bound: each message is well within the 300 ms call bound.
    scripts.set(id, { entries: 1000, everyMs: 100 });
    const o = observe(id);
    let got = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of createClient(AuditLogService, createGrpcTransport({ baseUrl: srv.baseUrl })).exportEntries({ tenantId: id }, { headers: auth })) got++;
      })(),
      (e: unknown) => e instanceof ConnectError && e.code === Code.DeadlineExceeded,
    );
    // More messages than fit in one call bound (300 ms / 100 ms), fewer than the script had.
    assert.ok(got > 4 && got < 1000, `got ${got} messages`);
    await o.onClosed;
  });

  test("resets the stream of a client that stopped reading altogether, a call bound after the stream bound", async () => {
    const id = tenant();
    scripts.set(id, { entries: 2000, bytes: 32 * 1024 });
    const o = observe(id);
    const session = http2.connect(srv.baseUrl);
    session.on("error", () => undefined);
    const body = toBinary(ExportEntriesRequestSchema, create(ExportEntriesRequestSchema, { tenantId: id }));
    const frame = Buffer.alloc(body.length + 5);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const req = session.request({ ":method": "POST", ":path": `/${AuditLogService.typeName}/ExportEntries`, "content-type": "application/grpc", te: "trailers", ...auth });
    req.on("error", () => undefined);
    const first = new Promise<void>((resolve) => req.once("data", () => resolve()));
    const closed = new Promise<number>((resolve) => req.once("close", () => resolve(req.rstCode ?? 0)));
    req.end(frame);
    await first;
    req.pause();
    assert.notEqual(await closed, http2.constants.NGHTTP2_NO_ERROR);
    await o.onClosed;
    session.close();
  });
});

describe("a server-streaming call's time bound, for a slow reader", { timeout: 60_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  before(async () => (srv = await startServer({ callTimeoutMs: 5_000, streamTimeoutMs: 1_000 })));
  after(() => srv.server.close(500));

  test("ends a stream whose client read too slowly with DEADLINE_EXCEEDED at the stream bound, not as if it were complete", async () => {
    const id = tenant();
    scripts.set(id, { entries: 2000, bytes: 32 * 1024 });
    const o = observe(id);
    const it = createClient(AuditLogService, createConnectTransport({ baseUrl: srv.baseUrl, httpVersion: "2" })).exportEntries({ tenantId: id }, { headers: auth })[Symbol.asyncIterator]();
    await it.next();
    // Stop reading past the 1 s stream bound (within the 5 s grace), then read on.
    await new Promise((r) => setTimeout(r, 1_500));
    await o.onClosed;
    await assert.rejects(
      (async () => {
        for (;;) if ((await it.next()).done === true) return;
      })(),
      (e: unknown) => e instanceof ConnectError && e.code === Code.DeadlineExceeded,
    );
    assert.ok(o.produced < 2000);
  });
});

describe("a server-streaming call over HTTP/1.1", { timeout: 60_000 }, () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  // HTTP/1.1's request timeout bounds receiving the request, not the response: a stream outlives it.
  before(async () => (srv = await startServer({ callTimeoutMs: 5_000, streamTimeoutMs: 60_000, limits: { requestTimeoutMs: 1_000, headersTimeoutMs: 1_000 } })));
  after(() => srv.server.close(500));

  test("may run longer than the server's HTTP/1.1 request timeout", async () => {
    for (const transport of [createConnectTransport({ baseUrl: srv.baseUrl, httpVersion: "1.1" }), createGrpcWebTransport({ baseUrl: srv.baseUrl, httpVersion: "1.1" })]) {
      const id = tenant();
      // 20 messages 100 ms apart: at least 2 s, twice the request timeout.
      scripts.set(id, { entries: 20, everyMs: 100 });
      let got = 0;
      for await (const _ of createClient(AuditLogService, transport).exportEntries({ tenantId: id }, { headers: auth })) got++;
      assert.equal(got, 21);
    }
  });
});
