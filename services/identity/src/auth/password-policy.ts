import { zxcvbn, zxcvbnOptions } from "@zxcvbn-ts/core";
import * as common from "@zxcvbn-ts/language-common";
import * as en from "@zxcvbn-ts/language-en";
import { invalidArgument } from "@bulwark/core";
import type { PasswordHasher } from "./passwords.js";

/** The minimum length when the tenant policy names none (NIST 800-63B asks 8; we ask 12). */
export const defaultMinLength = 12;
/** The longest password accepted (the proto allows 256). */
export const maxLength = 256;
/** How many previous passwords may not be reused. */
export const historyDepth = 5;

let configured = false;
function configure(): void {
  if (configured) return;
  zxcvbnOptions.setOptions({
    dictionary: { ...common.dictionary, ...en.dictionary },
    graphs: common.adjacencyGraphs,
    translations: en.translations,
  });
  configured = true;
}

/** What a new password is checked against. */
export interface NewPasswordCheck {
  readonly password: string;
  /** The tenant policy's password_min_length (0 means the default). */
  readonly minLength?: number;
  readonly email: string;
  readonly displayName: string;
  /** argon2id hashes of the user's recent passwords, newest first. */
  readonly previousHashes?: readonly string[];
  /** The request field the password came in, for the error message. */
  readonly field?: string;
}

/** The words a password must not be built from: the email, its parts and the name. */
function userInputs(email: string, displayName: string): string[] {
  const [local = "", domain = ""] = email.toLowerCase().split("@");
  const parts = [email.toLowerCase(), local, domain, domain.split(".")[0] ?? "", ...local.split(/[._+-]+/), displayName.toLowerCase(), ...displayName.toLowerCase().split(/\s+/)];
  return [...new Set(parts.filter((p) => p.length >= 3))];
}

/**
 * Refuses a new password with INVALID_ARGUMENT naming the field and saying
 * why, following NIST SP 800-63B: a minimum length (the tenant's, default
 * 12), anything up to 256 characters, no composition rules; but not a
 * common or easily guessed password (zxcvbn score below 3), not one built
 * from the user's own email or name, and not one of the last five.
 */
export async function checkNewPassword(check: NewPasswordCheck, hasher: PasswordHasher): Promise<void> {
  const field = check.field ?? "new_password";
  const min = check.minLength !== undefined && check.minLength > 0 ? check.minLength : defaultMinLength;
  const length = [...check.password].length;
  if (length < min) throw invalidArgument(field, `must be at least ${min} characters long`);
  if (length > maxLength) throw invalidArgument(field, `must be at most ${maxLength} characters long`);
  configure();
  const inputs = userInputs(check.email, check.displayName);
  const result = zxcvbn(check.password, inputs);
  const personal = result.sequence.some((m) => m.pattern === "dictionary" && (m as { dictionaryName?: string }).dictionaryName === "userInputs");
  if (personal) throw invalidArgument(field, "is too easy to guess from your name or email address");
  if (result.score < 3) throw invalidArgument(field, "is too common or too easy to guess; a longer phrase of unrelated words works well");
  for (const previous of (check.previousHashes ?? []).slice(0, historyDepth)) {
    if (await hasher.verify(previous, check.password)) throw invalidArgument(field, `must not be one of your last ${historyDepth} passwords`);
  }
}
