import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Signing and verifying webhooks as the Standard Webhooks specification
 * (standardwebhooks.com) has it, so receivers using any of its libraries —
 * the `standardwebhooks` npm package among them — verify Bulwark's
 * deliveries unchanged:
 *
 * - three headers: `webhook-id` (the message id, the same on every retry),
 *   `webhook-timestamp` (Unix seconds) and `webhook-signature`;
 * - the signature is HMAC-SHA256 over `<id>.<timestamp>.<body>` with the
 *   secret's bytes, base64-encoded, written `v1,<base64>`; several are
 *   separated by spaces (one per secret valid during a rotation);
 * - secrets are written `whsec_<base64 of the key bytes>`;
 * - a receiver refuses a timestamp more than the tolerance (5 minutes) away
 *   from its clock, in either direction, against replay.
 */

/** The secret prefix of the specification. */
export const webhookSecretPrefix = "whsec_";
/** How far a timestamp may be from now, either way, by default (the specification's 5 minutes). */
export const webhookToleranceSeconds = 300;

/** The three headers of a signed webhook. */
export interface WebhookHeaders {
  readonly "webhook-id": string;
  readonly "webhook-timestamp": string;
  readonly "webhook-signature": string;
}

/** A delivery that does not verify; the message says which check failed, never a secret. */
export class WebhookVerificationError extends Error {
  override name = "WebhookVerificationError";
}

/** A new signing secret: `whsec_` and 32 random bytes in base64 (the specification allows 24 to 64). */
export function newWebhookSecret(): string {
  return webhookSecretPrefix + randomBytes(32).toString("base64");
}

/** The key bytes of a `whsec_…` secret (a bare base64 secret is accepted too). */
export function webhookSecretBytes(secret: string): Buffer {
  const b64 = secret.startsWith(webhookSecretPrefix) ? secret.slice(webhookSecretPrefix.length) : secret;
  const key = Buffer.from(b64, "base64");
  if (key.length === 0) throw new WebhookVerificationError("the signing secret is empty");
  return key;
}

function bodyBytes(payload: string | Uint8Array): Buffer {
  return typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** One `v1,<base64>` signature of a message with one secret. */
export function webhookSignature(secret: string | Uint8Array, messageId: string, timestampSeconds: number, payload: string | Uint8Array): string {
  const key = typeof secret === "string" ? webhookSecretBytes(secret) : secret;
  const mac = createHmac("sha256", key).update(`${messageId}.${timestampSeconds}.`).update(bodyBytes(payload)).digest("base64");
  return `v1,${mac}`;
}

/**
 * The headers of one delivery, signed with every secret in `secrets` (the
 * current one, and during a rotation's overlap the previous one too).
 */
export function signWebhook(secrets: readonly (string | Uint8Array)[], messageId: string, payload: string | Uint8Array, timestamp: Date = new Date()): WebhookHeaders {
  if (secrets.length === 0) throw new WebhookVerificationError("no signing secret");
  if (!/^[^\s.,]+$/.test(messageId)) throw new WebhookVerificationError("the message id must be non-empty without spaces, dots or commas");
  const ts = Math.floor(timestamp.getTime() / 1000);
  return {
    "webhook-id": messageId,
    "webhook-timestamp": String(ts),
    "webhook-signature": secrets.map((s) => webhookSignature(s, messageId, ts, payload)).join(" "),
  };
}

/**
 * Verifies a received webhook against one or more secrets (a receiver
 * mid-rotation holds two): the headers must be present, the timestamp
 * within `toleranceSeconds` of `now`, and some `v1` signature must match
 * one secret (compared in constant time). Throws WebhookVerificationError.
 */
export function verifyWebhook(secrets: string | readonly string[], headers: Readonly<Record<string, string | undefined>> | Headers, payload: string | Uint8Array, options: { now?: Date; toleranceSeconds?: number } = {}): void {
  const get = (name: string): string | undefined => (headers instanceof Headers ? (headers.get(name) ?? undefined) : Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1]);
  const id = get("webhook-id");
  const ts = get("webhook-timestamp");
  const sig = get("webhook-signature");
  if (id === undefined || ts === undefined || sig === undefined || id === "" || sig === "") throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  if (!/^\d{1,12}$/.test(ts)) throw new WebhookVerificationError("webhook-timestamp is not Unix seconds");
  const seconds = Number(ts);
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const tolerance = options.toleranceSeconds ?? webhookToleranceSeconds;
  if (seconds < now - tolerance) throw new WebhookVerificationError("webhook-timestamp is too old");
  if (seconds > now + tolerance) throw new WebhookVerificationError("webhook-timestamp is in the future");
  const presented = sig
    .split(" ")
    .map((s) => s.split(","))
    .filter(([v, b]) => v === "v1" && b !== undefined && b !== "")
    .map(([, b]) => Buffer.from(b!, "utf8"));
  for (const secret of typeof secrets === "string" ? [secrets] : secrets) {
    const expected = Buffer.from(webhookSignature(secret, id, seconds, payload).slice(3), "utf8");
    for (const p of presented) if (p.length === expected.length && timingSafeEqual(p, expected)) return;
  }
  throw new WebhookVerificationError("no signature matches");
}
