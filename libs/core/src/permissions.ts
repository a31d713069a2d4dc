/**
 * The permission catalogue of the mesh and the system roles built from it.
 * Declared once here so that every service (identity when it issues tokens
 * and answers CheckPermission, the others when they check a principal) and
 * every test agree on the names; a test proves that every permission an RPC
 * rule names is in the catalogue.
 */

/** One entry of the catalogue: `<service>.<resource>.<action>` and what it allows. */
export interface PermissionEntry {
  readonly name: string;
  readonly description: string;
}

/** A built-in role, identical in every tenant and never changed by one. */
export interface SystemRole {
  /** `system:<key>`, stable: tokens and assignments store it. */
  readonly id: string;
  readonly name: string;
  readonly description: string;
  /** Sorted catalogue names. */
  readonly permissions: readonly string[];
  /** Holders must use a second factor whatever the tenant policy. */
  readonly requiresMfa: boolean;
}

/** A tenant's own role, as the roles table stores it. */
export interface CustomRoleGrant {
  readonly id: string;
  readonly permissions: readonly string[];
}

const entries: readonly (readonly [name: string, description: string])[] = [
  // tenancy
  ["tenancy.tenants.create", "Create tenants (platform operators)"],
  ["tenancy.tenants.read", "Read the tenant's profile, plan and state"],
  ["tenancy.tenants.list", "List every tenant (platform operators)"],
  ["tenancy.tenants.update", "Change the tenant's display name and plan"],
  ["tenancy.tenants.suspend", "Suspend a tenant (platform operators)"],
  ["tenancy.tenants.reactivate", "Reactivate a suspended or closing tenant (platform operators)"],
  ["tenancy.tenants.close", "Close the tenant, starting the grace period before erasure"],
  ["tenancy.policies.read", "Read the tenant's security policy"],
  ["tenancy.policies.update", "Change the tenant's security policy"],
  // identity: users and roles
  ["identity.users.create", "Invite users into the tenant"],
  ["identity.users.read", "Read a user of the tenant"],
  ["identity.users.list", "List and search the tenant's users"],
  ["identity.users.update", "Change a user's profile"],
  ["identity.users.suspend", "Suspend and reactivate users"],
  ["identity.users.delete", "Delete users"],
  ["identity.users.offboard", "Offboard a leaver, handing their resources to a successor"],
  ["identity.roles.read", "Read the permission catalogue and the tenant's roles"],
  ["identity.roles.manage", "Create, change and delete custom roles"],
  ["identity.roles.assign", "Give users roles and take them away"],
  ["identity.roles.assign_owner", "Give or take the Owner role and transfer ownership"],
  ["identity.permissions.check", "Ask whether a user holds a permission"],
  ["identity.permissions.read", "Read a user's current effective permissions (services holding credentials for a user)"],
  // identity: sessions and credentials
  ["identity.sessions.self", "List and end one's own sessions"],
  ["identity.sessions.read", "List another user's sessions"],
  ["identity.sessions.revoke", "End every session of another user"],
  ["identity.password.self", "Change one's own password"],
  ["identity.mfa.self", "Enrol and remove one's own second factor"],
  ["identity.mfa.reset", "Reset another user's second factor so they enrol again"],
  ["identity.passkeys.self", "Register and remove one's own passkeys"],
  ["identity.recovery_codes.self", "Generate one's own recovery codes"],
  ["identity.operators.manage", "Manage platform operators (platform operators)"],
  ["identity.operators.self", "Enrol one's own second factor and sign out (platform operators)"],
  // keys
  ["keys.api_keys.create", "Create API keys"],
  ["keys.api_keys.read", "Read an API key's metadata (never its secret)"],
  ["keys.api_keys.list", "List the tenant's API keys"],
  ["keys.api_keys.revoke", "Revoke API keys"],
  ["keys.api_keys.rotate", "Rotate API keys"],
  ["keys.api_keys.verify", "Verify presented API keys (services)"],
  ["keys.api_keys.update", "Rename API keys and change their metadata"],
  ["keys.encryption.encrypt", "Encrypt data with the tenant's data keys"],
  ["keys.encryption.decrypt", "Decrypt data with the tenant's data keys"],
  ["keys.encryption.read", "Read the versions and state of the tenant's data keys"],
  ["keys.encryption.rotate", "Rotate the tenant's data keys"],
  ["keys.encryption.destroy", "Destroy a data key, making its ciphertext unreadable"],
  ["keys.encryption.rewrap", "Re-encrypt ciphertext under the newest key version without seeing the plaintext"],
  ["keys.subject_keys.destroy", "Destroy a data subject's key, erasing their encrypted personal data"],
  ["keys.secrets.read", "Read the value of stored credentials (every read is recorded)"],
  ["keys.secrets.list", "List stored credentials and their versions (metadata only)"],
  ["keys.secrets.write", "Store credentials and new versions of them"],
  ["keys.secrets.delete", "Delete stored credentials"],
  ["keys.webhooks.read", "Read the metadata of webhook signing secrets"],
  ["keys.webhooks.manage", "Create, rotate and delete webhook signing secrets"],
  ["keys.webhooks.sign", "Sign webhook payloads with the tenant's signing secrets (services)"],
  // audit
  ["audit.records.read", "Read audit records"],
  ["audit.records.list", "Search and list audit records"],
  ["audit.records.export", "Export audit records"],
  ["audit.records.verify", "Verify the integrity of the audit chain"],
  ["audit.retention.manage", "Change how long audit records are kept"],
  ["audit.monitoring.read", "Read the tenant's monitoring rules and their settings"],
  ["audit.monitoring.manage", "Turn monitoring rules on and off and change their thresholds"],
  // compliance
  ["compliance.exports.create", "Start a data subject export"],
  ["compliance.exports.read", "Read and download data subject exports"],
  ["compliance.erasures.create", "Request the erasure of a data subject"],
  ["compliance.erasures.approve", "Approve a requested erasure (second pair of eyes)"],
  ["compliance.erasures.read", "Read erasure requests and their progress"],
  ["compliance.reports.read", "Read compliance reports and evidence"],
  ["compliance.retention.manage", "Change data retention rules"],
  ["compliance.posture.read", "Read the tenant's security posture"],
  ["compliance.requests.create", "Record a data subject's request (export, erasure, rectification)"],
  ["compliance.requests.read", "Read data subject requests, their progress and legal holds"],
  ["compliance.requests.manage", "Verify, extend, reject and complete data subject requests"],
  ["compliance.legal_holds.manage", "Place and lift legal holds that block erasure"],
  ["compliance.tenant_deletions.read", "Read the deletion of closed tenants (platform)"],
  ["compliance.subject_data.serve", "Serve a service's data about a subject to compliance (compliance only)"],
  ["compliance.posture.evaluate", "Evaluate the tenant's security posture now"],
  ["compliance.access_reviews.read", "Read access review campaigns and their decisions"],
  ["compliance.access_reviews.manage", "Start and close access review campaigns"],
  ["compliance.access_reviews.decide", "Keep or revoke grants in an access review"],
  ["compliance.retention.read", "Read data retention rules and pending retention actions"],
];

/**
 * Every permission of the mesh, sorted by name. Roles, tokens and RPC rules
 * may name only these.
 */
export const permissionCatalogue: readonly PermissionEntry[] = Object.freeze(
  [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, description]) => Object.freeze({ name, description })),
);

const catalogueNames: ReadonlySet<string> = new Set(permissionCatalogue.map((p) => p.name));

/** True if `name` is in the catalogue. */
export function isCataloguePermission(name: string): boolean {
  return catalogueNames.has(name);
}

const all = permissionCatalogue.map((p) => p.name);
const allBut = (...excluded: string[]): string[] => all.filter((p) => !excluded.includes(p));
const memberPermissions = [
  "identity.sessions.self",
  "identity.password.self",
  "identity.mfa.self",
  "identity.passkeys.self",
  "identity.recovery_codes.self",
  "identity.users.read",
  "identity.roles.read",
  "tenancy.tenants.read",
  "tenancy.policies.read",
];
const developerPermissions = [
  ...memberPermissions,
  ...all.filter((p) => p.startsWith("keys.api_keys.")),
  "keys.encryption.encrypt",
  "keys.encryption.decrypt",
  "keys.encryption.rewrap",
  "keys.secrets.list",
  "keys.secrets.write",
  "keys.webhooks.read",
];
/**
 * Reads that return a secret's value rather than metadata: "reads
 * everything" (Monitor) stops short of them.
 */
const valueReads = ["keys.secrets.read"];

/** The id of the Owner role, which a tenant must always have an active holder of. */
export const ownerRoleId = "system:owner";
/** The id of the Admin role (what a previous owner becomes on a transfer). */
export const adminRoleId = "system:admin";
/** The id of the Member role, the default of an invited user. */
export const memberRoleId = "system:member";

function role(id: string, name: string, description: string, permissions: readonly string[], requiresMfa = false): SystemRole {
  return Object.freeze({ id, name, description, permissions: Object.freeze([...new Set(permissions)].sort()), requiresMfa });
}

/** The built-in roles, in the order ListRoles shows them. */
export const systemRoles: readonly SystemRole[] = Object.freeze([
  role(ownerRoleId, "Owner", "Full control of the tenant, including ownership and closing it", all, true),
  role(adminRoleId, "Admin", "Runs the tenant day to day: everything but ownership and closing the tenant", allBut("identity.roles.assign_owner", "tenancy.tenants.close"), true),
  role("system:team_lead", "Team Lead", "Invites and manages the members of a team and builds with them", [
    ...developerPermissions,
    "identity.users.create",
    "identity.users.list",
    "identity.users.update",
    "identity.sessions.read",
    "identity.permissions.check",
    "audit.records.read",
    "audit.records.list",
  ]),
  role("system:project_manager", "Project Manager", "Follows the work of the tenant: users, keys, audit and compliance reports, read-only", [
    ...memberPermissions,
    "identity.users.list",
    "keys.api_keys.read",
    "keys.api_keys.list",
    "audit.records.read",
    "audit.records.list",
    "compliance.reports.read",
    "compliance.posture.read",
  ]),
  role(memberRoleId, "Member", "Signs in and manages their own credentials", memberPermissions),
  role("system:developer", "Developer", "A member who builds on the tenant: API keys and encryption", developerPermissions),
  role("system:monitor", "Monitor", "Reads everything but stored credentials' values, changes nothing", all.filter((p) => (p.endsWith(".read") || p.endsWith(".list")) && !valueReads.includes(p))),
  role("system:billing", "Billing", "Manages the tenant's plan and reads compliance reports", ["tenancy.tenants.read", "tenancy.tenants.update", "compliance.reports.read"]),
]);

const systemById: ReadonlyMap<string, SystemRole> = new Map(systemRoles.map((r) => [r.id, r]));

/** The system role with this id, if it is one. */
export function systemRole(id: string): SystemRole | undefined {
  return systemById.get(id);
}

/**
 * The permissions a holder of `roleIds` has: the union of their system and
 * custom roles. Unknown ids (a custom role deleted meanwhile, a system role
 * renamed) grant nothing.
 */
export function effectivePermissions(roleIds: Iterable<string>, customRoles: Iterable<CustomRoleGrant> = []): Set<string> {
  const custom = new Map<string, readonly string[]>();
  for (const r of customRoles) custom.set(r.id, r.permissions);
  const out = new Set<string>();
  for (const id of roleIds) {
    for (const p of systemById.get(id)?.permissions ?? custom.get(id) ?? []) out.add(p);
  }
  return out;
}
