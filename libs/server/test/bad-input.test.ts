/**
 * Malformed requests are the caller's mistake on every protocol: bytes that
 * are not protobuf, invalid UTF-8, a health check of a name the server does
 * not host — INVALID_ARGUMENT or NOT_FOUND, never INTERNAL, and nothing of
 * the request echoed back.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { DiagnosticsService, health } from "@bulwark/contracts";
import { BootstrapCredentialResolver, createLogger, ServiceAssertions } from "@bulwark/core";
import * as http2 from "node:http2";
import * as net from "node:net";
import { BulwarkServer, CallPipeline, diagnosticsRegistration, HealthStatus, undecodableMessage } from "../src/index.js";

const logger = createLogger("test", "silent");
const pingPath = `/${DiagnosticsService.typeName}/Ping`;
const checkPath = `/${health.Health.typeName}/Check`;
/** Not protobuf: a length-delimited field 1 that claims more bytes than follow. */
const garbage = Buffer.from([0x0a, 0x7f, 0x53, 0x45, 0x43, 0x52, 0x45, 0x54]);

let server: BulwarkServer;
let port: number;
let baseUrl: string;

before(async () => {
  server = new BulwarkServer({
    services: [diagnosticsRegistration],
    pipeline: new CallPipeline({ resolvers: [new BootstrapCredentialResolver("unit-test-bootstrap-token-0123")], assertions: ServiceAssertions.development("test"), logger }),
    health: new HealthStatus([DiagnosticsService.typeName]),
    logger,
  });
  port = await server.listen(0, "127.0.0.1");
  baseUrl = `http://127.0.0.1:${port}`;
});

after(() => server.close(500));

function envelope(flags: number, data: Uint8Array): Buffer {
  const b = Buffer.alloc(data.length + 5);
  b[0] = flags;
  b.writeUInt32BE(data.length, 1);
  b.set(data, 5);
  return b;
}

async function overConnect(path: string, body: Uint8Array, contentType = "application/proto"): Promise<{ status: number; code: string; message: string }> {
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": contentType, "connect-protocol-version": "1" }, body });
  const json = (await res.json()) as { code: string; message: string };
  return { status: res.status, code: json.code, message: json.message };
}

async function overGrpcWeb(path: string, body: Uint8Array): Promise<{ status: string | undefined; message: string | undefined }> {
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body: envelope(0, body) });
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes[0] === 0x80 ? bytes.subarray(5).toString("utf8") : "";
  const fields = Object.fromEntries(text.split("\r\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
  return { status: fields["grpc-status"], message: fields["grpc-message"] === undefined ? undefined : decodeURIComponent(fields["grpc-message"]) };
}

async function overGrpc(path: string, body: Uint8Array, extra: Record<string, string> = {}): Promise<{ status: string | undefined; message: string | undefined }> {
  const session = http2.connect(baseUrl);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...extra });
      let out: { status: string | undefined; message: string | undefined } | undefined;
      const take = (h: http2.IncomingHttpHeaders): void => {
        if (h["grpc-status"] !== undefined) out ??= { status: String(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
      };
      req.on("response", take);
      req.on("trailers", take);
      req.on("data", () => undefined);
      req.on("error", reject);
      req.on("close", () => resolve(out ?? { status: undefined, message: undefined }));
      req.end(envelope(0, body));
    });
  } finally {
    session.close();
  }
}

describe("undecodable requests", () => {
  test("garbage protobuf over the Connect protocol is INVALID_ARGUMENT and does not echo the bytes", async () => {
    for (const path of [pingPath, checkPath]) {
      const r = await overConnect(path, garbage);
      assert.deepEqual(r, { status: 400, code: "invalid_argument", message: undecodableMessage }, path);
    }
  });

  test("garbage protobuf over gRPC-Web is INVALID_ARGUMENT", async () => {
    for (const path of [pingPath, checkPath]) assert.deepEqual(await overGrpcWeb(path, garbage), { status: String(Code.InvalidArgument), message: undecodableMessage }, path);
  });

  test("garbage protobuf over gRPC is INVALID_ARGUMENT, on the fast path and through connect-node", async () => {
    assert.deepEqual(await overGrpc(pingPath, garbage), { status: String(Code.InvalidArgument), message: undecodableMessage });
    // Health is served by connect-node, not the fast path.
    assert.deepEqual(await overGrpc(checkPath, garbage), { status: String(Code.InvalidArgument), message: undecodableMessage });
  });

  test("invalid UTF-8 in a protobuf string is INVALID_ARGUMENT on every protocol", async () => {
    const badString = Buffer.from([0x0a, 0x02, 0xc3, 0x28]);
    assert.equal((await overConnect(checkPath, badString)).code, "invalid_argument");
    assert.equal((await overGrpcWeb(checkPath, badString)).status, String(Code.InvalidArgument));
    assert.equal((await overGrpc(checkPath, badString)).status, String(Code.InvalidArgument));
  });

  test("invalid UTF-8 in a JSON body is INVALID_ARGUMENT, not replaced", async () => {
    const body = Buffer.concat([Buffer.from('{"service":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    assert.equal((await overConnect(checkPath, body, "application/json")).code, "invalid_argument");
  });

  test("an HTTP/1.0 request without a Host header is answered, and the server lives on", async () => {
    const socket = net.connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
    await new Promise((resolve) => {
      socket.once("close", resolve);
      socket.write(`POST ${pingPath} HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`);
    });
    assert.match(received, /^HTTP\/1\.[01] 400/);
    const res = await createClient(DiagnosticsService, createGrpcTransport({ baseUrl })).ping({ payload: new Uint8Array([1]) });
    assert.deepEqual([...res.payload], [1]);
  });
});

describe("health", () => {
  test("a health check of a name the server does not host is NOT_FOUND without echoing the name, on every protocol", async () => {
    const name = `bulwark.secret.v1.${"X".repeat(300)}`;
    for (const transport of [createGrpcTransport({ baseUrl }), createConnectTransport({ baseUrl, httpVersion: "1.1" }), createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })]) {
      await assert.rejects(createClient(health.Health, transport).check({ service: name }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound && !e.rawMessage.includes("secret") && e.rawMessage === "unknown service");
    }
  });
});
