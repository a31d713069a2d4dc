import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { DiagnosticsService, PingRequestSchema, PingResponseSchema, type PingRequest } from "@bulwark/contracts";
import { BootstrapCredentialResolver, createLogger, ServiceAssertions } from "@bulwark/core";
import { BulwarkServer, CallPipeline, ClientAddressResolver, diagnosticsRegistration, HealthStatus, RateLimiter } from "@bulwark/server";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

/** A running server under test. */
export interface Target {
  readonly address: string;
  close(): Promise<void>;
}

export const pingPath = `/${DiagnosticsService.typeName}/Ping`;

/** (a) A bare @grpc/grpc-js server: the transport's own limit here. */
export async function bareGrpcJs(): Promise<Target> {
  const server = new grpc.Server();
  server.addService(
    {
      ping: {
        path: pingPath,
        requestStream: false,
        responseStream: false,
        requestDeserialize: (b: Buffer) => fromBinary(PingRequestSchema, b),
        requestSerialize: (m: PingRequest) => Buffer.from(toBinary(PingRequestSchema, m)),
        responseSerialize: (m: PingRequest) => Buffer.from(toBinary(PingResponseSchema, create(PingResponseSchema, { payload: m.payload }))),
        responseDeserialize: (b: Buffer) => fromBinary(PingResponseSchema, b),
      },
    },
    { ping: (call: grpc.ServerUnaryCall<PingRequest, PingRequest>, cb: grpc.sendUnaryData<PingRequest>) => cb(null, call.request) },
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, close: () => new Promise((r) => server.tryShutdown(() => r())) };
}

/** (b) Bulwark's server stack: fast path, full pipeline, a public no-op. */
export async function bulwarkStack(): Promise<Target> {
  const logger = createLogger("bench", "silent");
  const pipeline = new CallPipeline({
    resolvers: [new BootstrapCredentialResolver("bench-bootstrap-token-0123456789")],
    assertions: ServiceAssertions.development("bench"),
    logger,
    // As a service runs it: the client address, the call-duration bound and
    // the public-method limiter (with a limit the benchmark never reaches).
    clientAddresses: new ClientAddressResolver([]),
    callTimeoutMs: 30_000,
    publicRateLimit: new RateLimiter({ perMinute: 1_000_000_000 }),
  });
  const server = new BulwarkServer({
    services: [diagnosticsRegistration],
    pipeline,
    health: new HealthStatus([DiagnosticsService.typeName]),
    logger,
  });
  const port = await server.listen(0, "127.0.0.1");
  return { address: `127.0.0.1:${port}`, close: () => server.close(1000) };
}

/** For reference: connect-node's adapter on node's http2 server, no interceptors. */
export async function plainConnectNode(): Promise<Target> {
  const handler = connectNodeAdapter({ routes: (r) => r.service(DiagnosticsService, { ping: (req) => ({ payload: req.payload }) }) });
  const server = http2.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return { address: `127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
