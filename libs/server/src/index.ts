/**
 * How every Bulwark service serves and calls: the call pipeline (the
 * interceptor chain), the one-port gRPC/Connect/gRPC-Web server with health
 * and reflection, and client transports that propagate the call context.
 */
export * from "./pipeline.js";
export * from "./client-address.js";
export * from "./rate-limit.js";
export * from "./connect-handler.js";
export * from "./grpc-fast-path.js";
export * from "./health.js";
export * from "./reflection.js";
export * from "./server.js";
export * from "./client.js";
export * from "./runtime.js";
export * from "./diagnostics.js";
export * from "./api-key-resolver.js";
export * from "./follower.js";
export * from "./scheduler.js";
export * from "./metrics.js";
export * from "./refusals.js";
export * from "./participant.js";
export * from "./background-consumer.js";
export * from "./retention-copy.js";
