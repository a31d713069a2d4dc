import { retentionCopyConsumer, type RuntimeDeps, type ServiceModule } from "@bulwark/server";
import { authEntities } from "./auth/entities.js";
import { authRegistrations, authResolvers, jwksHttpRoute } from "./auth/registrations.js";
import { argon2InFlight } from "./auth/passwords.js";
import { identityContext } from "./context.js";
import { InvitationEntity } from "./entities/invitation.entity.js";
import { housekeepingJobs } from "./housekeeping/housekeeping.js";
import { RoleEntity } from "./entities/role.entity.js";
import { UserRoleEntity } from "./entities/user-role.entity.js";
import { UserEntity } from "./entities/user.entity.js";
import { mfaEntities, mfaRegistrations } from "./mfa/part.js";
import { migrations } from "./migrations/index.js";
import { notificationsConsumers, notificationsEntities, notificationsRegistrations } from "./notifications/part.js";
import { startAuditAlerts, stopAuditAlerts } from "./notifications/audit-alerts.js";
import { operatorsEntities, operatorsRegistrations } from "./operators/part.js";
import { listOperators } from "./operators/store.js";
import { LegacySecretsMigration } from "./sealing/migrate-legacy.js";
import { passkeysEntities, passkeysRegistrations } from "./passkeys/part.js";
import { participantRegistrations } from "./participant/part.js";
import { userRegistrations } from "./users/registrations.js";

/**
 * The identity service as the runtime starts it, one part per folder:
 * users and roles (users/), passwords, sign-in, sessions and tokens (auth/),
 * TOTP and recovery codes (mfa/), passkeys (passkeys/), security
 * notifications (notifications/), platform operators (operators/) and the
 * data-subject participant compliance calls (participant/); its
 * periodic housekeeping (housekeeping/); and the public keys of its access
 * tokens at /.well-known/jwks.json.
 */
export const identityModule: ServiceModule = {
  name: "identity",
  entities: [UserEntity, UserRoleEntity, RoleEntity, InvitationEntity, ...authEntities, ...mfaEntities, ...passkeysEntities, ...notificationsEntities, ...operatorsEntities],
  migrations,
  services: (deps) => {
    const ctx = identityContext(deps);
    return [...userRegistrations(ctx), ...authRegistrations(ctx), ...mfaRegistrations(ctx), ...passkeysRegistrations(ctx), ...notificationsRegistrations(ctx), ...operatorsRegistrations(ctx), ...participantRegistrations(ctx)];
  },
  consumers: (deps) => [...notificationsConsumers(identityContext(deps)), retentionCopyConsumer(deps.config.EVENTS_SUBJECT_PREFIX, "identity_retention_rules")],
  issuesAccessTokens: true,
  resolvers: (deps) => authResolvers(identityContext(deps)),
  httpRoutes: (deps) => ({ "/.well-known/jwks.json": jwksHttpRoute(identityContext(deps)) }),
  operatorsExist: async (deps) => (await listOperators(deps.db)).length > 0,
  jobs: (deps) => housekeepingJobs(deps.db),
  async onStart(deps) {
    deps.metrics.gauge({ name: "bulwark_identity_argon2_in_flight", help: "argon2 hashes and verifications started and not finished in this process (queued for or running on libuv's thread pool).", read: argon2InFlight });
    legacyMigration(deps).start();
    startAuditAlerts(deps);
  },
  onStop: async (deps) => {
    await stopAuditAlerts(deps);
    await legacyMigration(deps).stop();
  },
};

const migrations_ = new WeakMap<RuntimeDeps, LegacySecretsMigration>();

/** The background move of secrets still in interim layouts onto keys (one per started service). */
function legacyMigration(deps: RuntimeDeps): LegacySecretsMigration {
  let m = migrations_.get(deps);
  if (m === undefined) {
    m = new LegacySecretsMigration(deps.db, identityContext(deps).sealer, deps.logger.child({ part: "sealing" }));
    migrations_.set(deps, m);
  }
  return m;
}
