/** The audit service, for the runtime, tests, benchmarks and the CLI. */
export { auditModule, auditModuleOf, auditParts } from "./module.js";
export { migrations } from "./migrations/index.js";
export { auditContext, type AuditContext } from "./context.js";
export { retentionRoleOf } from "./retention-role.js";
export { auditSources, type AuditSource } from "./ingest/sources.js";
export { leafOf, entryOfLeaf } from "./tree/leaf.js";
export { effectiveSettings, ruleNames, type EffectiveSettings } from "./monitoring/rules.js";
