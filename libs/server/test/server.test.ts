import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { DiagnosticsService, PingRequestSchema, PingResponseSchema } from "@bulwark/contracts";
import { BootstrapCredentialResolver, createLogger, ServiceAssertions } from "@bulwark/core";
import { BulwarkServer, CallPipeline, diagnosticsRegistration, HealthStatus } from "../src/index.js";

let server: BulwarkServer;
let baseUrl: string;
let port: number;

before(async () => {
  const logger = createLogger("test", "silent");
  server = new BulwarkServer({
    services: [diagnosticsRegistration],
    pipeline: new CallPipeline({ resolvers: [new BootstrapCredentialResolver("unit-test-bootstrap-token-0123")], assertions: ServiceAssertions.development("test"), logger }),
    health: new HealthStatus([DiagnosticsService.typeName]),
    logger,
    httpRoutes: { "/.well-known/test.json": async () => ({ contentType: "application/json", body: '{"ok":true}' }) },
  });
  port = await server.listen(0, "127.0.0.1");
  baseUrl = `http://127.0.0.1:${port}`;
});

after(() => server.close(500));

const payload = new Uint8Array([1, 2, 3]);

test("one port answers gRPC, Connect over HTTP/2 and HTTP/1.1, and gRPC-Web", async () => {
  for (const transport of [
    createGrpcTransport({ baseUrl }),
    createConnectTransport({ baseUrl, httpVersion: "2" }),
    createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  ]) {
    const res = await createClient(DiagnosticsService, transport).ping({ payload });
    assert.deepEqual(res.payload, payload);
  }
});

test("a plain JSON POST over HTTP/1.1 works, as curl would send it", async () => {
  const res = await fetch(`${baseUrl}/${DiagnosticsService.typeName}/Ping`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payload: "AQID" }) });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { payload: "AQID" });
});

test("validation errors take the same form on the fast path and through connect-node", async () => {
  const big = new Uint8Array(1025);
  for (const transport of [createGrpcTransport({ baseUrl }), createConnectTransport({ baseUrl, httpVersion: "1.1" })]) {
    await assert.rejects(createClient(DiagnosticsService, transport).ping({ payload: big }), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && e.rawMessage.startsWith("payload:"));
  }
});

function grpcJsPing(options: grpc.ClientOptions, body: Uint8Array): Promise<{ err: grpc.ServiceError | null; res?: Buffer; md?: grpc.Metadata }> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
  return new Promise((resolve) => {
    let md: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(`/${DiagnosticsService.typeName}/Ping`, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(body), new grpc.Metadata(), (err, res) => {
      client.close();
      resolve({ err, ...(res ? { res } : {}), ...(md ? { md } : {}) });
    });
    call.on("metadata", (m) => (md = m));
  });
}

test("a stock grpc-js client is answered, with a request id header", async () => {
  const { err, res, md } = await grpcJsPing({}, toBinary(PingRequestSchema, create(PingRequestSchema, { payload })));
  assert.equal(err, null);
  assert.deepEqual([...fromBinary(PingResponseSchema, res!).payload], [...payload]);
  assert.match(String(md?.get("x-request-id")[0]), /^req_/);
});

test("a gzip-compressed gRPC call is served through connect-node", async () => {
  const { err, res } = await grpcJsPing({ "grpc.default_compression_algorithm": 2, "grpc.default_compression_level": 2 }, toBinary(PingRequestSchema, create(PingRequestSchema, { payload })));
  assert.equal(err, null);
  assert.deepEqual([...fromBinary(PingResponseSchema, res!).payload], [...payload]);
});

test("an undecodable request is INVALID_ARGUMENT, not a crash", async () => {
  const { err } = await grpcJsPing({}, new Uint8Array([0x0a, 0xff]));
  assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
  const again = await grpcJsPing({}, toBinary(PingRequestSchema, create(PingRequestSchema, { payload })));
  assert.equal(again.err, null);
});

test("an unknown method is UNIMPLEMENTED", async () => {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const err = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.makeUnaryRequest(`/${DiagnosticsService.typeName}/Nope`, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (e) => resolve(e)),
  );
  client.close();
  assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
});

test("a public GET route is served on the same port, and any other path is 404", async () => {
  const res = await fetch(`${baseUrl}/.well-known/test.json`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { ok: true });
  assert.equal((await fetch(`${baseUrl}/.well-known/nothing-here`)).status, 404);
});
