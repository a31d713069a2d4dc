/** The compliance service, for the runtime, tests and benchmarks. */
export { complianceModule, complianceModuleOf, complianceParts } from "./module.js";
export { complianceContext, type ComplianceContext, type ComplianceOptions } from "./context.js";
export type { CompliancePart } from "./part.js";
export { sharedMigrations } from "./migrations/index.js";
