import { participantRegistration } from "@bulwark/server";
import type { KeysPart } from "../part.js";
import { KeysParticipantImpl } from "./participant-service.js";

/** keys' DataSubjectParticipant (for compliance only): API keys and subject key rings. */
export const participantPart: KeysPart = {
  name: "participant",
  entities: [],
  registrations: (ctx) => [participantRegistration(new KeysParticipantImpl({ db: ctx.deps.db, events: ctx.deps.events, rings: ctx.rings, afterCommit: () => ctx.deps.relay.nudge() }))],
};
