import { createHash } from "node:crypto";
import { z } from "zod";
import { parsePublicKeys } from "./mesh-keys.js";
import { isCidr } from "./validate.js";

/** The ports each service listens on by default (local development). */
export const defaultPorts = {
  tenancy: 50051,
  identity: 50052,
  keys: 50053,
  audit: 50054,
  compliance: 50055,
} as const;

/** The name of a Bulwark service. */
export type ServiceName = keyof typeof defaultPorts;

/** Raised when an environment variable is missing or malformed; names it. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const devBootstrapToken = "bulwark-dev-bootstrap-token";
const devServiceSecret = "bulwark-dev-service-secret-change-me-0123456789";
/** Outside production only: the API-key pepper derived from a fixed label, so dev keys survive restarts. */
const devApiKeyPepper = createHash("sha256").update("bulwark-dev-api-key-pepper").digest("base64url");

/**
 * Where the product's pages are served (identity's mails link to
 * `<PUBLIC_BASE_URL>/accept-invitation?token=…`): an http(s) URL, optionally
 * with a path prefix, without query or fragment; trailing slashes dropped.
 */
const publicBaseUrl = z
  .url({ protocol: /^https?$/ })
  .refine((u) => !u.includes("?") && !u.includes("#"), "must have no query or fragment")
  .default("http://localhost:3000")
  .transform((u) => u.replace(/\/+$/, ""));

/** Where another service answers: one URL (a Kubernetes Service) or several replicas, comma-separated. */
const serviceUrls = z.string().regex(/^https?:\/\/[^\s,]+(,https?:\/\/[^\s,]+)*$/, "must be http(s)://host:port, or several separated by commas");
/** `v2:<base64 32 bytes>,v1:<…>`: the keys service's master keyring (see services/keys/src/master). */
const masterKeyEntry = String.raw`\*?[A-Za-z0-9_-]{1,32}:[A-Za-z0-9+/_-]{43}=?`;
const masterKeysPattern = new RegExp(`^${masterKeyEntry}(,${masterKeyEntry})*$`);

/**
 * The environment every service reads. Defaults serve local development
 * against 127.0.0.1; in production (NODE_ENV=production) the secrets have no
 * defaults and must be set.
 */
function commonSchema(service: ServiceName) {
  return z.object({
    NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
    HOST: z.string().min(1).default("127.0.0.1"),
    PORT: z.coerce.number().int().min(0).max(65535).default(defaultPorts[service]),
    DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).default(`postgres://bulwark_${service}@127.0.0.1:5432/bulwark`),
    DATABASE_ADMIN_URL: z.url({ protocol: /^postgres(ql)?$/ }).default("postgres://postgres@127.0.0.1:5432/bulwark"),
    DATABASE_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).default(service),
    DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
    NATS_URL: z.string().regex(/^(nats|tls):\/\/[^\s,]+(,(nats|tls):\/\/[^\s,]+)*$/, "must be nats://host:port, or several separated by commas").default("nats://127.0.0.1:4222"),
    NATS_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
    // How long a service's stream keeps an event (days; 0 keeps every event for ever). Every consumer must catch up within it.
    EVENTS_MAX_AGE_DAYS: z.coerce.number().int().min(0).max(3650).default(30),
    NATS_USER: z.string().min(1).max(128).optional(),
    NATS_PASSWORD: z.string().min(1).max(512).optional(),
    EVENTS_SUBJECT_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/).default("bulwark"),
    BULWARK_BOOTSTRAP_TOKEN: z.string().min(24, "must be at least 24 characters").optional(),
    BULWARK_SERVICE_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
    KEYS_API_KEY_PEPPER: z.string().min(32, "must be at least 32 characters").optional(),
    BULWARK_SERVICE_KEY: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a 32-byte Ed25519 seed, base64url (bulwark mesh keygen)").optional(),
    BULWARK_SERVICE_PUBLIC_KEYS: z.string().max(4096).optional(),
    BULWARK_BOOTSTRAP_RETIRES: z.enum(["true", "false"]).default("true"),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
    TENANCY_URL: serviceUrls.default(`http://127.0.0.1:${defaultPorts.tenancy}`),
    IDENTITY_URL: serviceUrls.default(`http://127.0.0.1:${defaultPorts.identity}`),
    KEYS_URL: serviceUrls.default(`http://127.0.0.1:${defaultPorts.keys}`),
    AUDIT_URL: serviceUrls.default(`http://127.0.0.1:${defaultPorts.audit}`),
    COMPLIANCE_URL: serviceUrls.default(`http://127.0.0.1:${defaultPorts.compliance}`),
    SMTP_URL: z.url({ protocol: /^smtps?$/ }).optional(),
    MAIL_FROM: z.string().min(3).max(200).default("Bulwark <no-reply@bulwark.local>"),
    PUBLIC_BASE_URL: publicBaseUrl,
    CACHE_TTL_MS: z.coerce.number().int().min(0).max(300_000).default(5_000),
    BULWARK_MASTER_KEYS: z
      .string()
      .max(4096)
      .regex(masterKeysPattern, "must be id:base64key entries (32-byte keys) separated by commas, the active one first or marked with *")
      .optional(),
    KEYS_CACHE_MAX_KEYS: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
    KEYS_JOB_INTERVAL_MS: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
    // compliance: the services whose DataSubjectParticipant a request or a tenant deletion runs across (their *_URL says where).
    COMPLIANCE_PARTICIPANTS: z
      .string()
      .default("tenancy,identity,keys,audit")
      .transform((s) => s.split(",").map((p) => p.trim()).filter((p) => p !== ""))
      .refine((list) => list.length > 0 && list.every((p) => ["tenancy", "identity", "keys", "audit", "compliance"].includes(p)), "must be service names separated by commas (tenancy,identity,keys,audit)"),
    // compliance: how often the saga worker looks for due participant steps.
    COMPLIANCE_SAGA_POLL_MS: z.coerce.number().int().min(50).max(600_000).default(1_000),
    // compliance: the first retry delay of a participant that failed; doubles up to COMPLIANCE_RETRY_MAX_MS.
    COMPLIANCE_RETRY_BASE_MS: z.coerce.number().int().min(10).max(3_600_000).default(1_000),
    COMPLIANCE_RETRY_MAX_MS: z.coerce.number().int().min(10).max(86_400_000).default(300_000),
    // compliance: how long an export bundle may be downloaded before a job deletes it (hours, default 7 days).
    COMPLIANCE_EXPORT_TTL_HOURS: z.coerce.number().int().min(1).max(8_760).default(168),
    SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
    // Proxies whose forwarding headers (X-Forwarded-For, Forwarded, X-Real-IP)
    // are believed; from any other peer they are ignored.
    TRUSTED_PROXIES: z
      .string()
      .default("")
      .transform((s) => s.split(",").map((c) => c.trim()).filter((c) => c !== ""))
      .refine((list) => list.every(isCidr), "must be comma-separated CIDR blocks such as 10.0.0.0/8,fd00::/8"),
    // The longest a call may run on the server before it answers DEADLINE_EXCEEDED.
    CALL_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
    // The longest a server-streaming call (an audit export, an export download) may run in all;
    // each of its messages must still come within CALL_TIMEOUT_MS.
    STREAM_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(86_400_000).default(3_600_000),
    // Calls per minute one client address may make to one public method; 0 turns the limit off.
    PUBLIC_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).max(1_000_000_000).default(300),
    METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  });
}

/** A service's validated configuration. */
export type ServiceConfig = Omit<z.infer<ReturnType<typeof commonSchema>>, "BULWARK_BOOTSTRAP_TOKEN" | "BULWARK_SERVICE_SECRET" | "KEYS_API_KEY_PEPPER"> & {
  SERVICE: ServiceName;
  BULWARK_BOOTSTRAP_TOKEN: string;
  BULWARK_SERVICE_SECRET: string;
  /** keys only: the HMAC key API-key secrets are hashed with (a dev value outside production). */
  KEYS_API_KEY_PEPPER: string;
};

/**
 * Parses the environment once at start-up. A missing or malformed variable
 * throws ConfigError naming every offending variable (never its value, which
 * may be a secret).
 */
export function loadConfig(service: ServiceName, env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const parsed = commonSchema(service).safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  const c = parsed.data;
  const production = c.NODE_ENV === "production";
  if (production && c.BULWARK_BOOTSTRAP_TOKEN === undefined) {
    throw new ConfigError("invalid configuration: BULWARK_BOOTSTRAP_TOKEN: required in production");
  }
  if (production && service === "identity" && c.BULWARK_SERVICE_SECRET === undefined) {
    throw new ConfigError("invalid configuration: BULWARK_SERVICE_SECRET: required in production");
  }
  if (production && service === "keys" && c.BULWARK_MASTER_KEYS === undefined) {
    throw new ConfigError("invalid configuration: BULWARK_MASTER_KEYS: required in production (the master keyring that wraps every data key)");
  }
  if (production && service === "keys" && c.KEYS_API_KEY_PEPPER === undefined) {
    throw new ConfigError("invalid configuration: KEYS_API_KEY_PEPPER: required in production (the HMAC key of every API key's stored hash)");
  }
  if (production && c.BULWARK_SERVICE_KEY === undefined) {
    throw new ConfigError("invalid configuration: BULWARK_SERVICE_KEY: required in production");
  }
  if (production && c.BULWARK_SERVICE_PUBLIC_KEYS === undefined) {
    throw new ConfigError("invalid configuration: BULWARK_SERVICE_PUBLIC_KEYS: required in production");
  }
  try {
    parsePublicKeys(c.BULWARK_SERVICE_PUBLIC_KEYS ?? "");
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${err instanceof Error ? err.message : "BULWARK_SERVICE_PUBLIC_KEYS is malformed"}`);
  }
  if ((c.NATS_USER === undefined) !== (c.NATS_PASSWORD === undefined)) {
    throw new ConfigError("invalid configuration: NATS_USER and NATS_PASSWORD: set both or neither");
  }
  return {
    ...c,
    SERVICE: service,
    BULWARK_BOOTSTRAP_TOKEN: c.BULWARK_BOOTSTRAP_TOKEN ?? devBootstrapToken,
    BULWARK_SERVICE_SECRET: c.BULWARK_SERVICE_SECRET ?? devServiceSecret,
    KEYS_API_KEY_PEPPER: c.KEYS_API_KEY_PEPPER ?? devApiKeyPepper,
  };
}
