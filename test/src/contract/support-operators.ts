/**
 * What the operator tests share: signing a platform operator all the way in.
 * A new operator's first sign-in gives tokens that can only enrol a second
 * factor; `operatorWithTotp` enrols TOTP with them, confirms it and
 * refreshes into full tokens, as a person at a console would.
 */
import assert from "node:assert/strict";
import { OperatorService, type OperatorTokens } from "@bulwark/contracts";
import { clientFor } from "../support/harness.js";
import { roomInStep, totpCode } from "./support-totp.js";

/** A signed-in operator with TOTP. */
export interface SignedInOperator {
  readonly id: string;
  readonly email: string;
  readonly password: string;
  /** The TOTP secret (base32). */
  readonly secret: string;
  /** Full tokens (every permission). */
  readonly tokens: OperatorTokens;
}

/** An anonymous OperatorService client from a random client address. */
export function anonymousOperators(baseUrl: string) {
  return clientFor(OperatorService, baseUrl, undefined, "grpc", { "x-forwarded-for": `10.77.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}` });
}

/**
 * Signs an existing operator without a second factor in, enrols and
 * confirms TOTP (spending the code of the previous time step, so the
 * current one is still free for a later sign-in) and refreshes into full
 * tokens.
 */
export async function operatorWithTotp(baseUrl: string, email: string, password: string): Promise<SignedInOperator> {
  await roomInStep();
  const first = await anonymousOperators(baseUrl).signInOperator({ email, password });
  assert.equal(first.mfaEnrollmentRequired, true, "a new operator's first sign-in is enrolment-only");
  const mine = clientFor(OperatorService, baseUrl, first.accessToken);
  const { secret } = await mine.enrollOperatorTotp({});
  await mine.confirmOperatorTotp({ code: totpCode(secret, -1) });
  const { tokens } = await anonymousOperators(baseUrl).refreshOperatorTokens({ refreshToken: first.refreshToken });
  assert.ok(tokens !== undefined && !tokens.mfaEnrollmentRequired, "after enrolling, the refresh gives full tokens");
  return { id: first.operatorId, email, password, secret, tokens };
}
