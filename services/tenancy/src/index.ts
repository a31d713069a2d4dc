/** The tenancy service, for the runtime, tests and benchmarks. */
export { tenancyModule } from "./module.js";
export { TenancyServiceImpl, closeGracePeriodMs, type TenancyDeps } from "./tenancy-service.js";
export { TenantEntity } from "./entities/tenant.entity.js";
export { SecurityPolicyEntity } from "./entities/security-policy.entity.js";
export { migrations } from "./migrations/index.js";
