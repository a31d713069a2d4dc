/** The keys service, for the runtime, tests, benchmarks and the CLI. */
export { keysModule, keysModuleWith } from "./module.js";
export { migrations } from "./migrations/index.js";
