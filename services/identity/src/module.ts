import type { RuntimeDeps, ServiceModule } from "@bulwark/server";
import { authEntities } from "./auth/entities.js";
import { authRegistrations, authResolvers, jwksHttpRoute } from "./auth/registrations.js";
import { identityContext } from "./context.js";
import { Housekeeping } from "./housekeeping.js";
import { InvitationEntity } from "./entities/invitation.entity.js";
import { RoleEntity } from "./entities/role.entity.js";
import { UserRoleEntity } from "./entities/user-role.entity.js";
import { UserEntity } from "./entities/user.entity.js";
import { mfaEntities, mfaRegistrations } from "./mfa/part.js";
import { migrations } from "./migrations/index.js";
import { notificationsConsumers, notificationsEntities, notificationsRegistrations } from "./notifications/part.js";
import { operatorsEntities, operatorsRegistrations } from "./operators/part.js";
import { passkeysEntities, passkeysRegistrations } from "./passkeys/part.js";
import { userRegistrations } from "./users/registrations.js";

const housekeepers = new WeakMap<RuntimeDeps, Housekeeping>();

/**
 * The identity service as the runtime starts it, one part per folder:
 * users and roles (users/), passwords, sign-in, sessions and tokens (auth/),
 * TOTP and recovery codes (mfa/), passkeys (passkeys/), security
 * notifications (notifications/) and platform operators (operators/); the
 * public keys of its access tokens at /.well-known/jwks.json; and the
 * housekeeping that deletes expired rows every HOUSEKEEPING_INTERVAL_MS.
 */
export const identityModule: ServiceModule = {
  name: "identity",
  entities: [UserEntity, UserRoleEntity, RoleEntity, InvitationEntity, ...authEntities, ...mfaEntities, ...passkeysEntities, ...notificationsEntities, ...operatorsEntities],
  migrations,
  services: (deps) => {
    const ctx = identityContext(deps);
    return [...userRegistrations(ctx), ...authRegistrations(ctx), ...mfaRegistrations(ctx), ...passkeysRegistrations(ctx), ...notificationsRegistrations(ctx), ...operatorsRegistrations(ctx)];
  },
  consumers: (deps) => notificationsConsumers(identityContext(deps)),
  issuesAccessTokens: true,
  resolvers: (deps) => authResolvers(identityContext(deps)),
  httpRoutes: (deps) => ({ "/.well-known/jwks.json": jwksHttpRoute(identityContext(deps)) }),
  async onStart(deps) {
    const housekeeping = new Housekeeping(deps.db, deps.logger.child({ part: "housekeeping" }));
    housekeeping.start(deps.config.HOUSEKEEPING_INTERVAL_MS);
    housekeepers.set(deps, housekeeping);
  },
  async onStop(deps) {
    await housekeepers.get(deps)?.stop();
  },
};
