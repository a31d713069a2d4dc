/**
 * Assertions shared by the contract tests: a contract is the code a caller
 * receives and the field its message names, so each refusal is checked for
 * both, whatever the protocol.
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Awaits `call` and asserts that it fails with `code`; if `mentions` is given
 * the error message must contain it (the field name for INVALID_ARGUMENT).
 * Returns the error for further checks.
 */
export async function refusedWith(call: Promise<unknown>, code: Code, mentions?: string | RegExp): Promise<ConnectError> {
  let outcome: unknown;
  try {
    outcome = await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(Code[ce.code], Code[code], `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.rawMessage}`);
    if (typeof mentions === "string") assert.ok(ce.rawMessage.includes(mentions), `expected the message to mention "${mentions}", got: ${ce.rawMessage}`);
    else if (mentions !== undefined) assert.match(ce.rawMessage, mentions);
    assert.doesNotMatch(ce.rawMessage, /\n\s+at |SELECT |INSERT |UPDATE |relation "/i, "the message leaks internals");
    return ce;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded with ${JSON.stringify(outcome, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`);
}

/** Whole seconds of a protobuf Duration or Timestamp. */
export function secondsOf(value: { seconds: bigint } | undefined): number {
  assert.ok(value !== undefined, "expected a value, got none");
  return Number(value.seconds);
}

/** A day in seconds. */
export const day = 86_400;
