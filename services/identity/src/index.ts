/** The identity service, for the runtime, tests and benchmarks. */
export { identityModule } from "./module.js";
export { UserEntity } from "./entities/user.entity.js";
export { UserRoleEntity } from "./entities/user-role.entity.js";
export { migrations } from "./migrations/index.js";
export { maxChallengeAttempts } from "./mfa/challenges.js";
export { identityContext } from "./context.js";
export { SecretBox } from "./mfa/secret-box.js";
export { migrateLegacySecrets } from "./sealing/migrate-legacy.js";
export { housekeepingJobs, purgeRetainedSessions, defaultSessionRetentionS } from "./housekeeping/housekeeping.js";
