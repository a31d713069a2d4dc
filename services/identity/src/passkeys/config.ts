import { z } from "zod";

/** Where passkeys are valid: the relying party's id and name, and the origins its pages run on. */
export interface WebAuthnConfig {
  readonly rpId: string;
  readonly rpName: string;
  readonly origins: readonly string[];
}

const origin = z
  .string()
  .trim()
  .url()
  .refine((u) => URL.canParse(u) && new URL(u).origin === u, "must be a bare origin (scheme://host[:port])");

const schema = z.object({
  WEBAUTHN_RP_ID: z
    .string()
    .trim()
    .regex(/^[a-z0-9.-]+$/i, "must be a host name")
    .default("localhost"),
  WEBAUTHN_RP_NAME: z.string().trim().min(1).max(100).default("Bulwark"),
  WEBAUTHN_ORIGINS: z
    .string()
    .default("http://localhost:3000")
    .transform((s) => s.split(",").map((o) => o.trim()).filter((o) => o !== ""))
    .pipe(z.array(origin).min(1)),
});

/**
 * Parses the WebAuthn settings from the environment, failing with the
 * variable's name. They belong in libs/core's service config; until they
 * move there, the passkeys part reads them once when it starts.
 */
export function webAuthnConfig(env: Record<string, string | undefined> = process.env): WebAuthnConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid configuration: ${String(issue?.path.join(".") ?? "WEBAUTHN")}: ${issue?.message ?? "invalid"}`);
  }
  return { rpId: parsed.data.WEBAUTHN_RP_ID, rpName: parsed.data.WEBAUTHN_RP_NAME, origins: parsed.data.WEBAUTHN_ORIGINS };
}
