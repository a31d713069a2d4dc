/** The keys service, for the runtime, tests, benchmarks and the CLI. */
export { keysModule, keysModuleOf, keysParts } from "./module.js";
export { apiKeysPartWith, type ApiKeysOptions } from "./apikeys/part.js";
export { migrations } from "./migrations/index.js";
export { LocalKeyring, parseMasterKeys, developmentKeyring, type KeyProvider } from "./master/index.js";
export { keysContext, type KeysContext } from "./context.js";
export { rewrapMasterKeys } from "./master/rewrap.js";
export { rotationJob } from "./encryption/part.js";
export { reminderJob } from "./secrets/part.js";
export { parseCiphertext } from "./encryption/ciphertext.js";
