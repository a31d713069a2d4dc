/**
 * The shared runtime every Bulwark service builds on: call context (tenant,
 * principal, request id), errors, configuration, logging, telemetry,
 * credentials, authorization and edge validation.
 */
export * from "./context.js";
export * from "./ids.js";
export * from "./errors.js";
