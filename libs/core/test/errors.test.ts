import { test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { toConnectError } from "../src/index.js";

/** A MikroORM DriverException keeps the pg error's message, code and sqlState. */
class DriverException extends Error {
  constructor(
    message: string,
    readonly code?: string,
    readonly sqlState?: string,
  ) {
    super(message);
  }
}

test("a query in flight when Postgres restarts answers UNAVAILABLE, not INTERNAL", () => {
  for (const err of [
    new DriverException("update \"users\" set \"state\" = $1 - Connection terminated unexpectedly"),
    new DriverException("select 1 - terminating connection due to administrator command", "57P01"),
    new DriverException("select 1 - the database system is starting up", "57P03"),
    new DriverException("connection failure", undefined, "08006"),
    new Error("Client has encountered a connection error and is not queryable"),
    // The outbox wraps the driver's error: the lost connection is its cause.
    new Error("could not record event identity.user.invited", { cause: new DriverException("insert into outbox - Connection terminated unexpectedly") }),
  ]) {
    const ce = toConnectError(err, "req_1");
    assert.equal(ce.code, Code.Unavailable, err.message);
    assert.doesNotMatch(ce.rawMessage, /update|select|users/);
  }
});

test("any other error stays INTERNAL naming only the request id", () => {
  const ce = toConnectError(new DriverException("select 1 - syntax error at or near", "42601"), "req_2");
  assert.equal(ce.code, Code.Internal);
  assert.equal(ce.rawMessage, "internal error (request req_2)");
});
