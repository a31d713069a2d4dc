/**
 * Postgres for Bulwark services: per-service schema and roles, migrations run
 * as the schema owner, and a `Database` whose transactions are scoped to the
 * caller's tenant by row-level security.
 */
export * from "./errors.js";
export { quoteIdent } from "./identifiers.js";
export * from "./arrays.js";
export * from "./rls.js";
export * from "./provision.js";
export * from "./migrate.js";
export * from "./database.js";
export type { EntityManager } from "@mikro-orm/postgresql";
export * from "./runtime-state.js";
export * from "./scheduled-runs.js";
