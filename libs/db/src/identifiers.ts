import { InvalidIdentifierError } from "./errors.js";

/** Lower-case Postgres identifiers of at most 63 bytes, nothing that needs escaping. */
const identifierPattern = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Returns `name` double-quoted for DDL, after checking it against a strict
 * pattern. DDL cannot use bind parameters, so this is the only barrier
 * between configuration and the SQL text.
 */
export function quoteIdent(name: string, what = "identifier"): string {
  if (!identifierPattern.test(name)) {
    throw new InvalidIdentifierError(`${what} must match ${identifierPattern.source}`);
  }
  return `"${name}"`;
}

/**
 * Quotes a table name that may be schema-qualified (`schema.table`), each
 * part checked like `quoteIdent`.
 */
export function quoteQualified(name: string, what = "table"): string {
  const parts = name.split(".");
  if (parts.length > 2) throw new InvalidIdentifierError(`${what} must be "table" or "schema.table"`);
  return parts.map((part) => quoteIdent(part, what)).join(".");
}

/** A connection URL with its database replaced, keeping host, user and options. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** A URL fit for logs and error messages: no password, no query string. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`;
  } catch {
    return "an unparsable database URL";
  }
}
