import { Code, ConnectError } from "@connectrpc/connect";
import type { RuntimeDeps } from "@bulwark/server";
import { evidenceClients } from "./posture/mesh.js";
import { runAsService } from "@bulwark/core";

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
