import type { ServiceModule } from "@bulwark/server";
import { authRegistrations, authResolvers } from "./auth/registrations.js";
import { identityContext } from "./context.js";
import { UserRoleEntity } from "./entities/user-role.entity.js";
import { UserEntity } from "./entities/user.entity.js";
import { migrations } from "./migrations/index.js";
import { userRegistrations } from "./users/registrations.js";

/**
 * The identity service as the runtime starts it: users and roles
 * (users/), passwords, sign-in, sessions and tokens (auth/).
 */
export const identityModule: ServiceModule = {
  name: "identity",
  entities: [UserEntity, UserRoleEntity],
  migrations,
  services: (deps) => [...userRegistrations(identityContext(deps)), ...authRegistrations(identityContext(deps))],
  resolvers: (deps) => authResolvers(identityContext(deps)),
};
