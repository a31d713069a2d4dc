import { trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import { currentContext } from "./context.js";

export type { Logger } from "pino";

/**
 * Paths pino blanks out wherever they appear, as a second line of defence:
 * code must not log credentials in the first place.
 */
const redact = [
  "authorization",
  "*.authorization",
  "headers.authorization",
  "password",
  "*.password",
  "token",
  "*.token",
  "secret",
  "*.secret",
  "bulwark-service-assertion",
  "*.bulwark-service-assertion",
];

/**
 * A structured JSON logger for a service. Every line carries the request id,
 * tenant and trace id of the call it was written in, so one request can be
 * followed across services.
 */
export function createLogger(service: string, level = "info"): Logger {
  return pino({
    level,
    base: { service },
    redact: { paths: redact, censor: "[redacted]" },
    formatters: { level: (label) => ({ level: label }) },
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
  });
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
