import type { ServiceModule } from "@bulwark/server";
import { authRegistrations, authResolvers, jwksHttpRoute } from "./auth/registrations.js";
import { identityContext } from "./context.js";
import { InvitationEntity } from "./entities/invitation.entity.js";
import { RoleEntity } from "./entities/role.entity.js";
import { UserRoleEntity } from "./entities/user-role.entity.js";
import { UserEntity } from "./entities/user.entity.js";
import { authEntities } from "./auth/entities.js";
import { migrations } from "./migrations/index.js";
import { userRegistrations } from "./users/registrations.js";

/**
 * The identity service as the runtime starts it: users and roles
 * (users/), passwords, sign-in, sessions and tokens (auth/), and the
 * public keys of its access tokens at /.well-known/jwks.json.
 */
export const identityModule: ServiceModule = {
  name: "identity",
  entities: [UserEntity, UserRoleEntity, RoleEntity, InvitationEntity, ...authEntities],
  migrations,
  services: (deps) => [...userRegistrations(identityContext(deps)), ...authRegistrations(identityContext(deps))],
  issuesAccessTokens: true,
  resolvers: (deps) => authResolvers(identityContext(deps)),
  httpRoutes: (deps) => ({ "/.well-known/jwks.json": jwksHttpRoute(identityContext(deps)) }),
};
