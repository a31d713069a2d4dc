import type { SecurityPolicy } from "@bulwark/contracts";
import { checkNewPassword as checkAgainstPolicy } from "../auth/password-policy.js";
import { PasswordHasher } from "../auth/passwords.js";

/** What a password chosen on accepting an invitation is judged against. */
export interface NewPasswordInput {
  readonly password: string;
  /** The tenant's security policy (its password_min_length). */
  readonly policy: SecurityPolicy;
  readonly email: string;
  readonly displayName: string;
}

const hasher = new PasswordHasher();

/**
 * The single place UserService judges a new password: auth's password
 * policy (the tenant's minimum length, at most 256 characters, zxcvbn, not
 * built from the user's email or name). INVALID_ARGUMENT naming `password`.
 */
export async function checkNewPassword(input: NewPasswordInput): Promise<void> {
  await checkAgainstPolicy({ password: input.password, minLength: input.policy.passwordMinLength, email: input.email, displayName: input.displayName, field: "password" }, hasher);
}

/** An argon2id PHC string (m=19456 KiB, t=2, p=1) for a new password. */
export function hashPassword(password: string): Promise<string> {
  return hasher.hash(password);
}
