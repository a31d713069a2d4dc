/**
 * Transparency-log primitives shared by the audit service and its offline
 * verifier: RFC 6962 / RFC 9162 Merkle hashing, proofs over an abstract node
 * store and their verification, C2SP checkpoints and signed notes.
 */
export * from "./hash.js";
export * from "./tree.js";
export * from "./verify.js";
export * from "./note.js";
export * from "./checkpoint.js";
