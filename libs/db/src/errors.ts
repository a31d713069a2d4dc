/**
 * Raised when a schema, role, database or table name given to the db layer
 * is not a plain lower-case identifier. Names are interpolated into DDL
 * (which cannot take bind parameters), so anything else is refused outright.
 */
export class InvalidIdentifierError extends Error {
  override name = "InvalidIdentifierError";
}

/**
 * Raised when Postgres cannot be reached or refuses the service's
 * credentials at start-up. The message names the database and host only,
 * never the password; the driver error is kept in `cause` for the logs.
 */
export class DatabaseUnavailableError extends Error {
  override name = "DatabaseUnavailableError";
}

/**
 * Raised when provisioning or migrating a service schema fails. The message
 * names the schema and the step; the Postgres error (which may quote SQL)
 * stays in `cause`.
 */
export class MigrationError extends Error {
  override name = "MigrationError";
}
