import type { AuthenticationResponseJSON, RegistrationResponseJSON } from "@simplewebauthn/server";

/** How long a WebAuthn challenge lasts (registration and sign-in). */
export const webAuthnChallengeTtlMs = 5 * 60_000;

/** The transports WebAuthn defines; anything else a client sends is dropped. */
const knownTransports = new Set(["ble", "cable", "hybrid", "internal", "nfc", "smart-card", "usb"]);

/** The transports worth keeping from what an authenticator reported. */
export function cleanTransports(transports: readonly unknown[] | undefined): string[] {
  return [...new Set((transports ?? []).filter((t): t is string => typeof t === "string" && knownTransports.has(t)))];
}

/** A response that does not even parse as the JSON shape of a WebAuthn answer. */
export class MalformedWebAuthnResponse extends Error {
  override name = "MalformedWebAuthnResponse";
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const base64url = /^[A-Za-z0-9_-]+={0,2}$/;

function parseCredential(json: string, fields: readonly string[]): { id: string; response: Record<string, unknown>; raw: Record<string, unknown> } {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new MalformedWebAuthnResponse("not JSON", { cause: err });
  }
  if (!isRecord(raw) || typeof raw["id"] !== "string" || !base64url.test(raw["id"]) || raw["type"] !== "public-key" || !isRecord(raw["response"])) {
    throw new MalformedWebAuthnResponse("not a public-key credential");
  }
  const response = raw["response"];
  for (const f of fields) {
    if (typeof response[f] !== "string" || !base64url.test(response[f])) throw new MalformedWebAuthnResponse(`response.${f} is missing`);
  }
  return { id: raw["id"], response, raw };
}

/** Parses a RegistrationResponseJSON far enough to find its challenge. */
export function parseRegistrationResponse(json: string): { response: RegistrationResponseJSON; challenge: string } {
  const { raw, response } = parseCredential(json, ["clientDataJSON", "attestationObject"]);
  return { response: raw as unknown as RegistrationResponseJSON, challenge: challengeOf(response["clientDataJSON"] as string) };
}

/** Parses an AuthenticationResponseJSON far enough to find its credential and challenge. */
export function parseAuthenticationResponse(json: string): { response: AuthenticationResponseJSON; credentialId: string; challenge: string } {
  const { id, raw, response } = parseCredential(json, ["clientDataJSON", "authenticatorData", "signature"]);
  return { response: raw as unknown as AuthenticationResponseJSON, credentialId: id, challenge: challengeOf(response["clientDataJSON"] as string) };
}

/** The challenge a clientDataJSON (base64url) answers. */
export function challengeOf(clientDataJSON: string): string {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(clientDataJSON, "base64url").toString("utf8"));
  } catch (err) {
    throw new MalformedWebAuthnResponse("clientDataJSON is not JSON", { cause: err });
  }
  if (!isRecord(data) || typeof data["challenge"] !== "string" || data["challenge"] === "") throw new MalformedWebAuthnResponse("clientDataJSON has no challenge");
  return data["challenge"];
}

/**
 * Whether a presented signature counter may follow the stored one. A
 * counter must increase on every use; authenticators that keep no counter
 * always send 0, and stay at 0. Anything else means two copies of the key
 * are in use (WebAuthn §6.1.1), so the assertion is refused.
 */
export function counterAdvances(stored: number, presented: number): boolean {
  return presented > stored || (stored === 0 && presented === 0);
}
