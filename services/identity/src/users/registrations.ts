import type { ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";

/** UserService and RoleService. */
export function userRegistrations(_ctx: IdentityContext): ServiceRegistration[] {
  return [];
}
