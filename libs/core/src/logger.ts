import { trace } from "@opentelemetry/api";
import { pino, type DestinationStream, type Logger } from "pino";
import { currentContext } from "./context.js";

export type { Logger } from "pino";

/** What a redacted value is replaced with. */
export const redactedValue = "[redacted]";

/** Keys (lower case, without `_` and `-`) that always hold a credential. */
const sensitiveKeys = new Set([
  "authorization",
  "cookie",
  "setcookie",
  "bulwarkserviceassertion",
  "otpauthuri",
  "responsejson",
  "clientdatajson",
  "authenticatordata",
  "attestationobject",
  "signature",
  "userhandle",
  "privatekey",
  "apikey",
  "plaintext",
]);

/** Endings of credential keys: refreshToken, new_password, totpSecret, recoveryCodes, password_hash… */
const sensitiveEndings = ["token", "tokens", "password", "passphrase", "secret", "secrets", "hash", "code", "codes"];

/** Keys ending like a credential that are not one. */
const notSensitive = new Set(["code", "statuscode", "errorcode", "exitcode", "httpcode", "responsecode", "countrycode", "languagecode", "postalcode", "zipcode", "currencycode", "tokens"]);

const verdicts = new Map<string, boolean>();

/** True when a key names a credential, whatever its case and separators. */
export function isSensitiveKey(key: string): boolean {
  let verdict = verdicts.get(key);
  if (verdict === undefined) {
    const k = key.toLowerCase().replace(/[_-]/g, "");
    verdict = sensitiveKeys.has(k) || (!notSensitive.has(k) && sensitiveEndings.some((e) => k.endsWith(e)));
    // Keys come from code and from messages; cap the memo so odd keys cannot grow it.
    if (verdicts.size < 2_000) verdicts.set(key, verdict);
  }
  return verdict;
}

/**
 * A bare `code` is a status or error code in our own log fields
 * (`code: "INVALID_ARGUMENT"`, `ECONNREFUSED`, SQLSTATE) but a TOTP or
 * recovery code in our protos (ConfirmTotpRequest.code): it is redacted in
 * a protobuf message, and anywhere it looks like one of those codes.
 */
function isCredentialCode(value: unknown, inMessage: boolean): boolean {
  if (typeof value !== "string") return false;
  // A recovery code: XXXXX-XXXXX, or ten characters with a digit (ECONNRESET is not one).
  return inMessage || /^\d{6,8}$/.test(value) || /^[0-9A-Za-z]{5}[- ][0-9A-Za-z]{5}$/.test(value) || /^(?=[A-Za-z]*\d)[0-9A-Za-z]{10}$/.test(value);
}

const maxDepth = 12;

/** True for a protobuf-es message (it carries its type name), or a non-empty list of them. */
function isMessage(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0 && value.every(isMessage);
  return value !== null && typeof value === "object" && typeof (value as { $typeName?: unknown }).$typeName === "string";
}

/**
 * A copy of `value` with every credential replaced by `[redacted]`, at any
 * depth: plain objects, arrays and protobuf messages are walked, keys are
 * judged by name (camelCase and snake_case alike), byte arrays are shown as
 * their length. Objects without a credential are returned as they are, so
 * the common log line costs one pass over its keys and no copy.
 */
export function redactCredentials(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Uint8Array) return `[${value.length} bytes]`;
  if (value instanceof Error || value instanceof Date || value instanceof Map || value instanceof Set) return value;
  if (depth >= maxDepth) return "[too deep]";
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const next = redactCredentials(value[i], depth + 1);
      if (next !== value[i]) (out ??= value.slice())[i] = next;
    }
    return out ?? value;
  }
  const record = value as Record<string, unknown>;
  // A oneof of a protobuf message is `{ case: "totpCode", value: "…" }`: the
  // field's name is the case.
  if (typeof record["case"] === "string" && "value" in record && Object.keys(record).length === 2) {
    const name = record["case"];
    if ((name === "code" ? typeof record["value"] === "string" : isSensitiveKey(name)) && record["value"] !== "") return { case: name, value: redactedValue };
  }
  const inMessage = typeof record["$typeName"] === "string";
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const v = record[key];
    // A protobuf message under a credential's name (GetSecretResponse.secret is the secret's metadata)
    // is walked like any other: its own fields are judged by their names.
    const sensitive = (key === "code" ? isCredentialCode(v, inMessage) : isSensitiveKey(key) && !isMessage(v)) && v !== undefined && v !== "";
    const next = sensitive ? redactedValue : redactCredentials(v, depth + 1);
    if (next !== v) (out ??= { ...record })[key] = next;
  }
  return out ?? value;
}

/**
 * A structured JSON logger for a service. Every line carries the request id,
 * tenant and trace id of the call it was written in, so one request can be
 * followed across services. Credentials are redacted at any depth (see
 * `redactCredentials`) as a second line of defence: code must not log them
 * in the first place. `destination` defaults to stdout (tests capture it).
 */
export function createLogger(service: string, level = "info", destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service },
    // As deep as the redaction walks (pino's default of 5 cuts nested messages short).
    depthLimit: maxDepth,
    formatters: {
      level: (label: string) => ({ level: label }),
      // pino's own `redact` takes fixed paths (one level of wildcard), which
      // cannot follow a token nested in a request message; this walks all.
      log: (object: Record<string, unknown>) => redactCredentials(object) as Record<string, unknown>,
      bindings: (bindings: Record<string, unknown>) => redactCredentials(bindings) as Record<string, unknown>,
    },
    mixin() {
      const ctx = currentContext();
      const span = trace.getActiveSpan()?.spanContext();
      return {
        requestId: ctx?.requestId,
        tenantId: ctx?.tenantId,
        principal: ctx?.principal?.id,
        platform: ctx?.platformReason,
        traceId: span?.traceId,
      };
    },
  };
  const root = destination === undefined ? pino(options) : pino(options, destination);
  // pino serializes a child's bindings once, without formatters.bindings;
  // every child is given redacted bindings instead.
  type ChildFn = (this: Logger, bindings: Record<string, unknown>, childOptions?: unknown) => Logger;
  const protoChild = root.child as unknown as ChildFn;
  const guard = (instance: Logger): Logger => {
    const child: ChildFn = (bindings, childOptions) => guard(protoChild.call(instance, redactCredentials(bindings) as Record<string, unknown>, childOptions));
    instance.child = child as unknown as Logger["child"];
    return instance;
  };
  return guard(root);
}

/**
 * The message of an error safe for logs: name and message, without the
 * stack or driver details (which can carry SQL and parameter values).
 */
export function describeError(err: unknown): { name: string; message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const message = err.message.length > 300 ? `${err.message.slice(0, 300)}…` : err.message;
    return { name: err.constructor.name, message: redactSql(message), ...(typeof code === "string" ? { code } : {}) };
  }
  return { name: typeof err, message: "non-error thrown" };
}

function redactSql(message: string): string {
  return /\b(select|insert|update|delete)\b.+\b(from|into|set)\b/i.test(message) ? "database error (query redacted)" : message;
}
