/** The compliance service, for the runtime, tests and benchmarks. */
export { complianceModule, complianceModuleOf, complianceParts } from "./module.js";
export { complianceContext, type ComplianceContext, type ComplianceOptions } from "./context.js";
export type { CompliancePart } from "./part.js";
export { sharedMigrations } from "./migrations/index.js";
export { sagaWorker, exportExpiryJob } from "./requests/part.js";
export { expireExports } from "./requests/expiry.js";
export { tenantLifecycleDurable } from "./deletions/part.js";
export { SagaWorker } from "./saga/worker.js";
export { postureJob, postureEvaluator } from "./posture/part.js";
export { evaluateControls, controls as postureControls, defaultThresholds as postureThresholds } from "./posture/controls.js";
export { renderHtml as renderPostureHtml, renderJson as renderPostureJson, escapeHtml } from "./posture/render.js";
export { inactiveAccountsJob } from "./retention/part.js";
export { runInactiveAccountRule } from "./retention/inactive-accounts.js";
