import { tenantStatusBucket, tenantStatusOwner } from "./tenant-status.js";

/** The subject permissions of one NATS user, in nats-server's configuration shape. */
export interface NatsPermissions {
  readonly publish: { readonly allow: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
}

/** The KV bucket of keys' API-key usage-cap counters (keys alone writes it). */
export function keysUsageCapBucket(subjectPrefix: string): string {
  return `${subjectPrefix}_keys_usage`;
}

/** The KV buckets a service owns and alone may write: tenancy the tenant status, keys the usage caps. */
export function bucketsOwnedBy(subjectPrefix: string, service: string): string[] {
  if (service === tenantStatusOwner) return [tenantStatusBucket(subjectPrefix)];
  if (service === "keys") return [keysUsageCapBucket(subjectPrefix)];
  return [];
}

/** The JetStream stream of a service: `<PREFIX>_<SERVICE>`, upper case. */
export function streamNameOf(subjectPrefix: string, service: string): string {
  return `${subjectPrefix}_${service}`.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
}

/**
 * What a Bulwark service may do on NATS, and nothing more: publish its own
 * events (`<prefix>.<service>.>`), create and update its own stream, write
 * only the buckets it owns (tenancy: the tenant-status bucket), read every
 * stream and bucket through consumers and direct gets, and acknowledge what
 * it consumes. Deleting, purging or editing any stream's messages is not
 * allowed to any service. Anyone else reaching NATS with these credentials
 * cannot impersonate another service's events — and the envelopes' signatures
 * stop whoever reaches NATS without them.
 */
export function natsPermissionsOf(subjectPrefix: string, service: string): NatsPermissions {
  const stream = streamNameOf(subjectPrefix, service);
  const publish = [
    `${subjectPrefix}.${service}.>`,
    "$JS.API.INFO",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.INFO.*",
    `$JS.API.STREAM.CREATE.${stream}`,
    `$JS.API.STREAM.UPDATE.${stream}`,
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.>",
    "$JS.ACK.>",
    "$JS.FC.>",
  ];
  for (const bucket of bucketsOwnedBy(subjectPrefix, service)) {
    publish.push(`$KV.${bucket}.>`, `$JS.API.STREAM.CREATE.KV_${bucket}`, `$JS.API.STREAM.UPDATE.KV_${bucket}`);
  }
  return { publish: { allow: publish }, subscribe: { allow: ["_INBOX.>", `${subjectPrefix}.>`] } };
}

/** One NATS user of the mesh: a service and its password (plain, or a bcrypt hash as nats-server accepts). */
export interface NatsUser {
  readonly service: string;
  readonly password: string;
}

/**
 * The `authorization` block of a nats-server configuration giving each
 * service its own user and permissions (see natsPermissionsOf). Extra
 * users — an operator's administrative account — are passed verbatim with
 * their own permissions (none means all). The output is the JSON subset of
 * the NATS configuration syntax, so it can be included in a server config
 * file or a Helm value unchanged.
 */
export function natsAuthorizationConfig(subjectPrefix: string, users: readonly NatsUser[], extra: readonly { user: string; password: string; permissions?: NatsPermissions }[] = []): string {
  const entries = [
    ...users.map((u) => ({ user: u.service, password: u.password, permissions: natsPermissionsOf(subjectPrefix, u.service) })),
    ...extra.map((u) => (u.permissions === undefined ? { user: u.user, password: u.password } : { user: u.user, password: u.password, permissions: u.permissions })),
  ];
  return `authorization ${JSON.stringify({ users: entries }, null, 2)}\n`;
}
