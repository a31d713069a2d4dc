import { participantRegistration, type ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";
import { IdentityParticipantImpl } from "./participant-service.js";

/** identity's DataSubjectParticipant (for compliance only): users' profiles, sessions, passkeys, factors and roles. */
export function participantRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  return [participantRegistration(new IdentityParticipantImpl({ db: ctx.deps.db, events: ctx.deps.events, afterCommit: () => ctx.deps.relay.nudge() }))];
}
