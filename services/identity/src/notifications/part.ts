import type { ConsumerSpec, ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";

/** The entities of the notifications part (security notifications and email changes). */
export const notificationsEntities = [];

/** The services of the notifications part. */
export function notificationsRegistrations(_ctx: IdentityContext): ServiceRegistration[] {
  return [];
}

/** The event consumers of the notifications part (the mailer). */
export function notificationsConsumers(_ctx: IdentityContext): ConsumerSpec[] {
  return [];
}
