/**
 * Domain events for Bulwark services: a transactional outbox written in the
 * same transaction as the state change, a relay to JetStream, and durable
 * consumers that restore the call context, deduplicate through an inbox and
 * park poison messages.
 */
export * from "./errors.js";
export { describeError, type EventsLogger } from "./logger.js";
export { EventsMigration20260101 } from "./migration.js";
export { EventHeaders, buildEnvelope, contextFromEnvelope, headersFor, type EventInput } from "./envelope.js";
export * from "./publisher.js";
export * from "./relay.js";
export * from "./stream.js";
export * from "./consumer.js";
export * from "./tenant-status.js";
export * from "./signature.js";
export * from "./nats-permissions.js";
