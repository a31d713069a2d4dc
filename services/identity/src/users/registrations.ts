import { file_bulwark_identity_v1_role_service, file_bulwark_identity_v1_user_service, RoleService, UserService } from "@bulwark/contracts";
import type { ServiceRegistration } from "@bulwark/server";
import { revokeSessions } from "../auth/sessions.js";
import type { IdentityContext } from "../context.js";
import { RoleServiceImpl } from "./role-service.js";
import { maxAccessTokenLifetimeS, type SessionRevoker, type UsersDeps } from "./store.js";
import { UserServiceImpl } from "./user-service.js";

/**
 * UserService and RoleService. Suspending, deleting and offboarding a user
 * end their sessions in the same transaction through auth's
 * `revokeSessions` (one session.revoked event per session, which every
 * replica's revocation set follows). The longest access-token lifetime a
 * policy allows bounds how long the revocations must be remembered.
 */
export function userRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const sessions: SessionRevoker = {
    async revokeAllForUser(em, userId, reason) {
      return (await revokeSessions(em, ctx.deps.events, { userId }, reason, maxAccessTokenLifetimeS)).length;
    },
  };
  const deps: UsersDeps = { db: ctx.deps.db, events: ctx.deps.events, tenancy: ctx.tenancy, sessions, revoked: ctx.deps.revokedSessions, afterCommit: () => ctx.deps.relay.nudge() };
  return [
    { service: UserService, file: file_bulwark_identity_v1_user_service, impl: new UserServiceImpl(deps) as never },
    { service: RoleService, file: file_bulwark_identity_v1_role_service, impl: new RoleServiceImpl(deps) as never },
  ];
}
