import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Domain errors are ConnectErrors with the right code and a message that is
 * safe to show a caller: never SQL, stack traces, secrets or internal ids
 * beyond the one the caller named.
 */
export function notFound(what: string): ConnectError {
  return new ConnectError(`${what} not found`, Code.NotFound);
}

/** The named resource already exists (a unique key is taken). */
export function alreadyExists(what: string): ConnectError {
  return new ConnectError(`${what} already exists`, Code.AlreadyExists);
}

/** The resource is not in a state that allows the operation. */
export function failedPrecondition(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}

/** The request names a field with a bad value; the message names the field. */
export function invalidArgument(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument, undefined, undefined, undefined);
}

/** The caller lacks a permission or may not act on that tenant. */
export function permissionDenied(message = "permission denied"): ConnectError {
  return new ConnectError(message, Code.PermissionDenied);
}

/** No valid credential was presented. */
export function unauthenticated(message = "a valid credential is required"): ConnectError {
  return new ConnectError(message, Code.Unauthenticated);
}

/** A concurrent change won; the caller should re-read and retry. */
export function aborted(message: string): ConnectError {
  return new ConnectError(message, Code.Aborted);
}

/** Error names of MikroORM / driver exceptions mapped to codes. */
const driverCodes: Record<string, Code> = {
  UniqueConstraintViolationException: Code.AlreadyExists,
  NotFoundError: Code.NotFound,
  OptimisticLockError: Code.Aborted,
  DeadlockException: Code.Aborted,
  LockWaitTimeoutException: Code.Unavailable,
  ConnectionException: Code.Unavailable,
};

const driverMessages: Partial<Record<Code, string>> = {
  [Code.AlreadyExists]: "resource already exists",
  [Code.NotFound]: "resource not found",
  [Code.Aborted]: "concurrent modification; retry",
  [Code.Unavailable]: "a dependency is unavailable; retry",
};

/**
 * Maps any thrown value to a ConnectError fit for the wire. ConnectErrors
 * pass through; known ORM/driver errors get their code and a generic
 * message; anything else becomes INTERNAL naming only the request id, with
 * the original kept in `cause` for the logs.
 */
export function toConnectError(err: unknown, requestId: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const name = err instanceof Error ? err.constructor.name : "";
  const code = driverCodes[name];
  if (code !== undefined) {
    return new ConnectError(driverMessages[code] ?? "error", code, undefined, undefined, err);
  }
  if (isConnectionRefused(err)) {
    return new ConnectError(driverMessages[Code.Unavailable]!, Code.Unavailable, undefined, undefined, err);
  }
  return new ConnectError(`internal error (request ${requestId})`, Code.Internal, undefined, undefined, err);
}

/** Postgres messages (pg and MikroORM keep them as the error's message) that mean the connection was lost, not that the query was wrong. */
const connectionLost = /Connection terminated|connection error and is not queryable|terminating connection due to|the database system is (shutting down|starting up|in recovery mode)|server closed the connection unexpectedly|Client was closed and is not queryable|timeout exceeded when trying to connect/i;

/**
 * True when the database (or another dependency) could not be reached or
 * dropped the connection mid-query: refused or reset sockets, SQLSTATE class
 * 08 (connection exception) and 57P01–57P03 (shutdown, crash, starting up),
 * and pg's "Connection terminated unexpectedly" for a query in flight when
 * Postgres restarts. These are UNAVAILABLE: the caller may retry.
 */
function isConnectionRefused(err: unknown, depth = 0): boolean {
  const e = err as { code?: unknown; sqlState?: unknown; message?: unknown; cause?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : typeof e?.sqlState === "string" ? e.sqlState : undefined;
  if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE" || code === "57P01" || code === "57P02" || code === "57P03" || code?.startsWith("08") === true) return true;
  if (typeof e?.message === "string" && connectionLost.test(e.message)) return true;
  // A wrapper (the outbox's "could not record event …") keeps the lost connection as its cause.
  return depth < 4 && e?.cause !== undefined && e.cause !== null && isConnectionRefused(e.cause, depth + 1);
}
