/**
 * The logging the event machinery needs, shaped like pino's so a service
 * passes its own logger; the default writes JSON lines to stderr.
 */
export interface EventsLogger {
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** Fallback logger: one JSON line per entry, so logs stay machine-readable. */
export const stderrLogger: EventsLogger = {
  warn: (fields, message) => process.stderr.write(`${JSON.stringify({ level: "warn", msg: message, ...fields })}\n`),
  error: (fields, message) => process.stderr.write(`${JSON.stringify({ level: "error", msg: message, ...fields })}\n`),
};

/**
 * A description of an error fit for logs and the `parked_events` table: its
 * name and the first line of its message, capped. ORM driver exceptions
 * embed the failing SQL in their message, so for those only the name and
 * SQLSTATE are kept. Never a stack.
 */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return "non-error thrown";
  const name = err.name || err.constructor.name;
  const sqlState = (err as { code?: unknown }).code;
  if (err.constructor.name.endsWith("Exception")) {
    return typeof sqlState === "string" ? `${err.constructor.name} (SQLSTATE ${sqlState})` : err.constructor.name;
  }
  const firstLine = err.message.split("\n", 1)[0] ?? "";
  return `${name}: ${firstLine.slice(0, 300)}`;
}
