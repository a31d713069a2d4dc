/**
 * The shared runtime every Bulwark service builds on: call context (tenant,
 * principal, request id), errors, configuration, logging, telemetry,
 * credentials, authorization and edge validation.
 */
export * from "./context.js";
export * from "./ids.js";
export * from "./errors.js";
export * from "./config.js";
export * from "./logger.js";
export * from "./telemetry.js";
export * from "./credentials.js";
export * from "./mesh-keys.js";
export * from "./service-assertion.js";
export * from "./authz.js";
export * from "./permissions.js";
export { validateMessage, isCidr, isEmailAddress } from "./validate.js";
export * from "./access-tokens.js";
export * from "./cache-observer.js";
export * from "./page-token.js";
export * from "./api-keys.js";
export * from "./step-up.js";
export * from "./webhooks.js";
