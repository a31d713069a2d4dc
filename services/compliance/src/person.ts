import { Code, ConnectError } from "@connectrpc/connect";
import type { RuntimeDeps } from "@bulwark/server";
import { evidenceClients } from "./posture/mesh.js";
import { currentContext, hasPermission, permissionDenied, runAsService } from "@bulwark/core";
import type { IdentityClients } from "@bulwark/contracts";

/**
 * The person behind a principal id, for the rules that need two different
 * people (an erasure's requester and approver) or forbid deciding on one's
 * own grants: an API key (`key_…`) acts with its owner's permissions, so it
 * is its owner; every other principal is itself. Keys is asked as
 * compliance inside the tenant. A key keys no longer knows stays itself;
 * keys being unreachable is UNAVAILABLE (the rule is never skipped).
 */
export async function personOf(deps: RuntimeDeps, tenantId: string, principalId: string): Promise<string> {
  if (!principalId.startsWith("key_")) return principalId;
  try {
    const { key } = await runAsService("compliance", tenantId, () => evidenceClients(deps).apiKeys.getApiKey({ keyId: principalId }));
    return key?.ownerUserId || principalId;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return principalId;
    throw new ConnectError("keys cannot name the API key's owner now; retry", Code.Unavailable, undefined, undefined, err);
  }
}

/**
 * Identity's rule for acting on another user, held by compliance where it
 * acts later as itself on a caller's behalf (a review's revocations at
 * close, a rectification's corrections in the saga): PERMISSION_DENIED when
 * the user holds a permission the caller lacks (`why` says what was
 * refused). Identity is asked as compliance inside the tenant; a user it
 * does not know holds nothing; identity being unreachable is UNAVAILABLE
 * (the rule is never skipped).
 */
export async function refuseMorePrivilegedUser(identity: IdentityClients, tenantId: string, userId: string, why: string): Promise<void> {
  const caller = currentContext()?.principal;
  let held: readonly string[];
  try {
    held = (await runAsService("compliance", tenantId, () => identity.roles.getUserPermissions({ userId }))).permissions;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return;
    throw new ConnectError("identity is unavailable: the caller's rights over the user could not be checked, try again", Code.Unavailable, undefined, undefined, err);
  }
  const missing = held.find((perm) => caller === undefined || !hasPermission(caller, perm));
  if (missing !== undefined) throw permissionDenied(`the user holds ${missing}, which the caller lacks; ${why}`);
}
