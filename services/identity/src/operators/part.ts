import type { ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";

/** The entities of the operators part (platform operator accounts). */
export const operatorsEntities = [];

/** The services of the operators part. */
export function operatorsRegistrations(_ctx: IdentityContext): ServiceRegistration[] {
  return [];
}
