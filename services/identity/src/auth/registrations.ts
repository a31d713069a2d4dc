import type { CredentialResolver } from "@bulwark/core";
import type { ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";

/** AuthService and SessionService. */
export function authRegistrations(_ctx: IdentityContext): ServiceRegistration[] {
  return [];
}

/** Credential resolvers identity adds (access tokens). */
export function authResolvers(_ctx: IdentityContext): CredentialResolver[] {
  return [];
}
