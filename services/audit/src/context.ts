import { hostname } from "node:os";
import { z } from "zod";
import { createKeysClients, type KeysClients } from "@bulwark/contracts";
import { ConfigError } from "@bulwark/core";
import { createServiceTransport, type RuntimeDeps } from "@bulwark/server";
import { Privacy } from "./privacy/privacy.js";
import { Checkpoints } from "./tree/checkpoints.js";
import { TreeStore } from "./tree/store.js";

/** Audit's own environment, beyond what every service reads. */
const auditEnv = z.object({
  // The log name in checkpoint origins: `<AUDIT_LOG_NAME>/audit/<tenant id>` (default: the host name).
  AUDIT_LOG_NAME: z
    .string()
    .regex(/^[A-Za-z0-9.-]{1,200}$/, "must be a host-like name: letters, digits, dots and hyphens")
    .optional(),
  // How often each grown tenant tree gets a new signed checkpoint.
  AUDIT_CHECKPOINT_INTERVAL_MS: z.coerce.number().int().min(1000).max(86_400_000).default(60_000),
  // How many leaves ExportEntries reads per page (one short transaction each).
  AUDIT_EXPORT_PAGE_SIZE: z.coerce.number().int().min(1).max(10_000).default(500),
});

/** Audit's settings, parsed once. */
export interface AuditSettings {
  readonly logName: string;
  readonly checkpointIntervalMs: number;
  /** Leaves per page of an export (AUDIT_EXPORT_PAGE_SIZE). */
  readonly exportPageSize: number;
}

/** Parses audit's variables; throws ConfigError naming the bad one. */
export function auditSettings(env: NodeJS.ProcessEnv = process.env): AuditSettings {
  const parsed = auditEnv.safeParse(env);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return { logName: parsed.data.AUDIT_LOG_NAME ?? (hostname().replace(/[^A-Za-z0-9.-]/g, "-") || "bulwark"), checkpointIntervalMs: parsed.data.AUDIT_CHECKPOINT_INTERVAL_MS, exportPageSize: parsed.data.AUDIT_EXPORT_PAGE_SIZE };
}

/**
 * What audit's parts share beyond the runtime: its settings, typed clients
 * of keys, the privacy layer (subject encryption, keyed hashes), the tree
 * store and the checkpoint signer.
 */
export interface AuditContext {
  readonly deps: RuntimeDeps;
  readonly settings: AuditSettings;
  readonly keys: KeysClients;
  readonly privacy: Privacy;
  readonly tree: TreeStore;
  readonly checkpoints: Checkpoints;
}

const contexts = new WeakMap<RuntimeDeps, AuditContext>();

/** The audit context of one started service (created on first use). */
export function auditContext(deps: RuntimeDeps, env: NodeJS.ProcessEnv = process.env): AuditContext {
  let ctx = contexts.get(deps);
  if (ctx === undefined) {
    const settings = auditSettings(env);
    const keys = createKeysClients(createServiceTransport(deps.config.KEYS_URL, deps.assertions, "keys"));
    const tree = new TreeStore();
    const privacy = new Privacy(keys.encryption, deps.db);
    ctx = { deps, settings, keys, privacy, tree, checkpoints: new Checkpoints({ db: deps.db, tree, privacy, logName: settings.logName, logger: deps.logger }) };
    contexts.set(deps, ctx);
  }
  return ctx;
}
