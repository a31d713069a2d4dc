import { Database } from "@bulwark/db";
import { participantRegistration } from "@bulwark/server";
import type { AuditContext } from "../context.js";
import type { AuditPart } from "../part.js";
import { retentionRoleOf } from "../retention-role.js";
import { AuditParticipantImpl } from "./participant-service.js";

/** The retention connection of one started service (opened at start, closed at stop). */
const opened = new WeakMap<AuditContext, { db: Database; role: string }>();

/** audit's DataSubjectParticipant (for compliance only): the subject's trail entries; a deleted tenant's whole trail. */
export const participantPart: AuditPart = {
  name: "participant",
  entities: [],
  registrations: (ctx) => [
    participantRegistration(
      new AuditParticipantImpl({
        db: ctx.deps.db,
        privacy: ctx.privacy,
        retention: () => {
          const r = opened.get(ctx);
          if (r === undefined) throw new Error("audit's participant is not started");
          return r;
        },
      }),
    ),
  ],
  start: async (ctx) => {
    const config = ctx.deps.config;
    const db = await Database.open({ clientUrl: config.DATABASE_ADMIN_URL, schema: config.DATABASE_SCHEMA, entities: [], poolMax: 1 });
    opened.set(ctx, { db, role: retentionRoleOf(config) });
  },
  stop: async (ctx) => {
    await opened.get(ctx)?.db.close();
    opened.delete(ctx);
  },
};
