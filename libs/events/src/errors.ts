/**
 * Raised when an event cannot be written to the outbox or relayed. The
 * message is safe to log and show; the driver or NATS error is in `cause`.
 */
export class OutboxError extends Error {
  override name = "OutboxError";
}

/**
 * Raised when a consumer cannot be set up (stream missing, bad config). Per
 * message failures never throw out of the consumer; they are retried or
 * parked.
 */
export class ConsumerError extends Error {
  override name = "ConsumerError";
}
