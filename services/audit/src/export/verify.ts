/**
 * Offline verification of an NDJSON export (`bulwark-audit export`): one
 * `ExportEntriesResponse` per line in proto JSON, the checkpoint first, then
 * every leaf in order. Trusts nothing in the file: the checkpoint must carry
 * the signature of the verifier key the user holds; every leaf is rehashed
 * (RFC 6962) and the root recomputed; each leaf's inclusion proof, when
 * present, is checked against the signed root, so an edited entry is named
 * even when the rest is intact; a gap or a repeated index names a deleted or
 * reordered entry; an earlier checkpoint the user kept must be a prefix of
 * this log (its root is recomputed from the first entries).
 */
import { fromBinary, fromJsonString } from "@bufbuild/protobuf";
import { AuditEntrySchema, ExportEntriesResponseSchema, type AuditEntry } from "@bulwark/contracts";
import { RootBuilder, hashEqual, leafHash, openCheckpoint, parseVerifierKey, verifyInclusion, type VerifiedCheckpoint } from "@bulwark/tlog";

export interface Mismatch {
  /** The leaf index at which the log stops matching. */
  readonly leafIndex: number;
  /** The entry found there (when there is one). */
  readonly entryId?: string;
  /** What the entry says it is (action, resource, time), to find it. */
  readonly description?: string;
  /** 1-based line of the export. */
  readonly line: number;
  readonly reason: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly origin?: string;
  readonly size?: number;
  /** base64 root hash of the checkpoint. */
  readonly rootHash?: string;
  readonly entries: number;
  /** The first entry that does not match (undefined when none was found). */
  readonly firstMismatch?: Mismatch;
  /** Up to 20 mismatching entries, in log order. */
  readonly mismatches: readonly Mismatch[];
  /** Problems with the whole export (signature, size, root, consistency). */
  readonly problems: readonly string[];
  /** Whether an earlier checkpoint was checked and the log extends it. */
  readonly consistentWithPrevious?: boolean;
  /** Leaves whose entry the retention job removed (covered by a retention record in the log). */
  readonly expired: number;
  /** Remarks that do not fail the verification. */
  readonly notes: readonly string[];
}

export interface VerifyOptions {
  /** `<name>+<8 hex>+<base64>`, obtained out of band (GetVerifierKey, once). */
  readonly verifierKey: string;
  /** The origin expected (default: whatever the signed checkpoint says). */
  readonly origin?: string;
  /** An earlier signed checkpoint of the same log, kept by the user. */
  readonly previousCheckpoint?: string;
  /** Called after each entry (for a progress bar). */
  readonly onEntry?: (done: number, total: number) => void;
}

const MAX_MISMATCHES = 20;
/** The action of the entry the retention job records (AuditRetentionApplied). */
export const retentionAction = "audit.retention.applied";

function retainedThrough(e: AuditEntry): number | undefined {
  if (e.action !== retentionAction) return undefined;
  const f = e.changedFields.find((c) => c.name === "last_expired_index");
  const v = f?.newValue?.kind.case === "plain" ? f.newValue.kind.value : "0";
  return /^[0-9]+$/.test(v) ? Number(v) : undefined;
}

function describe(e: AuditEntry): string {
  const parts = [e.action];
  if (e.resource?.type) parts.push(`${e.resource.type}${e.resource.id ? ` ${e.resource.id}` : ""}`);
  if (e.actor?.id) parts.push(`by ${e.actor.id}`);
  if (e.recordedAt) parts.push(`recorded ${new Date(Number(e.recordedAt.seconds) * 1000 + Math.floor(e.recordedAt.nanos / 1e6)).toISOString()}`);
  return parts.join(", ");
}

/** Verifies an export given as its lines (a file read line by line). */
export async function verifyExport(lines: AsyncIterable<string> | Iterable<string>, opts: VerifyOptions): Promise<VerifyReport> {
  const problems: string[] = [];
  const mismatches: Mismatch[] = [];
  const mismatch = (m: Mismatch): void => {
    if (mismatches.length < MAX_MISMATCHES) mismatches.push(m);
  };
  let verifier;
  try {
    verifier = parseVerifierKey(opts.verifierKey.trim());
  } catch (e) {
    return { ok: false, entries: 0, mismatches, problems: [`verifier key: ${(e as Error).message}`], expired: 0, notes: [] };
  }

  let checkpoint: VerifiedCheckpoint | undefined;
  let previous: VerifiedCheckpoint | undefined;
  const builder = new RootBuilder();
  let consistentWithPrevious: boolean | undefined;
  let lineNo = 0;
  let expected = 0;
  let entries = 0;
  const notes: string[] = [];
  /** Leaves without content (removed by retention, or deleted): [index, entry id, line]. */
  const empty: [number, string, number][] = [];
  let lastExpired = -1;
  let withoutProof = 0;

  const checkPrevious = (): void => {
    if (previous && consistentWithPrevious === undefined && empty.length === 0 && builder.size === previous.size) {
      consistentWithPrevious = hashEqual(builder.root(), previous.rootHash);
      if (!consistentWithPrevious) {
        problems.push(`the first ${previous.size} entries do not hash to the earlier checkpoint's root: the log was rewritten since that checkpoint`);
      }
    }
  };

  for await (const raw of lines) {
    lineNo++;
    const line = raw.trim();
    if (line === "") continue;
    let msg;
    try {
      msg = fromJsonString(ExportEntriesResponseSchema, line);
    } catch {
      problems.push(`line ${lineNo} is not an export message`);
      if (!checkpoint) break;
      continue;
    }
    if (!checkpoint) {
      if (msg.item.case !== "checkpoint") {
        problems.push("the export does not start with a checkpoint");
        break;
      }
      try {
        checkpoint = openCheckpoint(msg.item.value, verifier, opts.origin);
      } catch (e) {
        problems.push(`checkpoint: ${(e as Error).message}`);
        break;
      }
      if (opts.previousCheckpoint !== undefined) {
        try {
          previous = openCheckpoint(opts.previousCheckpoint, verifier, checkpoint.origin);
        } catch (e) {
          problems.push(`earlier checkpoint: ${(e as Error).message}`);
        }
        if (previous && previous.size > checkpoint.size) {
          consistentWithPrevious = false;
          problems.push(`the earlier checkpoint has ${previous.size} entries, more than this one (${checkpoint.size}): the log was truncated`);
        }
        checkPrevious();
      }
      continue;
    }
    if (msg.item.case !== "entry") {
      problems.push(`line ${lineNo}: a second checkpoint`);
      continue;
    }
    const e = msg.item.value;
    const index = Number(e.leafIndex);
    const leafHashValue = leafHash(e.leaf);
    if (e.leaf.length === 0) {
      // Its content is gone: expired under the retention policy if a retention record covers it (checked at the end).
      if (index !== expected) mismatch({ leafIndex: expected, entryId: e.entryId, line: lineNo, reason: index > expected ? `entries ${expected} to ${index - 1} are missing (deleted)` : "out of order" });
      empty.push([index, e.entryId, lineNo]);
      entries++;
      expected = Math.max(expected, index) + 1;
      opts.onEntry?.(entries, checkpoint.size);
      continue;
    }
    let decoded: AuditEntry | undefined;
    try {
      decoded = fromBinary(AuditEntrySchema, e.leaf);
    } catch {
      decoded = undefined;
    }
    const base = { leafIndex: expected, entryId: e.entryId, line: lineNo, ...(decoded ? { description: describe(decoded) } : {}) };
    if (index > expected) {
      mismatch({ ...base, reason: index === expected + 1 ? `entry ${expected} is missing (deleted): the next entry has index ${index}` : `entries ${expected} to ${index - 1} are missing (deleted): the next entry has index ${index}` });
    } else if (index < expected) {
      mismatch({ ...base, reason: `out of order: an entry with index ${index} comes after index ${expected - 1}` });
    }
    if (!decoded) {
      mismatch({ ...base, leafIndex: index, reason: "its leaf is not an AuditEntry" });
    } else if (Number(decoded.leafIndex) !== index || decoded.entryId !== e.entryId) {
      mismatch({ ...base, leafIndex: index, reason: `its leaf says it is entry ${decoded.leafIndex} (${decoded.entryId}), not ${index} (${e.entryId}): moved` });
    }
    if (e.proof.length > 0 || checkpoint.size === 1) {
      if (!verifyInclusion(index, checkpoint.size, leafHashValue, e.proof, checkpoint.rootHash)) {
        mismatch({ ...base, leafIndex: index, reason: "does not match the signed checkpoint (its inclusion proof fails): it was changed or moved after it was recorded" });
      } else if (decoded) {
        const through = retainedThrough(decoded);
        if (through !== undefined) lastExpired = Math.max(lastExpired, through);
      }
    } else {
      withoutProof++;
    }
    builder.append(leafHashValue);
    entries++;
    expected = Math.max(expected, index) + 1;
    checkPrevious();
    opts.onEntry?.(entries, checkpoint.size);
  }

  if (!checkpoint) {
    if (problems.length === 0) problems.push("the export is empty");
    return { ok: false, entries, mismatches, problems, expired: 0, notes };
  }
  let expired = 0;
  for (const [index, entryId, line] of empty) {
    if (index <= lastExpired) expired++;
    else mismatch({ leafIndex: index, entryId, line, reason: "its content is gone (deleted), and no retention record in the log covers it" });
  }
  mismatches.sort((a, b) => a.leafIndex - b.leafIndex);
  if (entries !== checkpoint.size) {
    problems.push(`the export has ${entries} entries, the checkpoint ${checkpoint.size}`);
    if (entries < checkpoint.size && expected < checkpoint.size) mismatch({ leafIndex: expected, line: lineNo + 1, reason: `entries from ${expected} on are missing (the checkpoint has ${checkpoint.size})` });
  }
  // With expired leaves the root cannot be recomputed offline: every kept entry's inclusion proof stands in for it.
  const rootMatches = empty.length > 0 ? withoutProof === 0 : hashEqual(builder.root(), checkpoint.rootHash);
  if (empty.length > 0) {
    if (withoutProof > 0) problems.push(`${withoutProof} entries carry no inclusion proof, and expired entries keep the root from being recomputed: export again with proofs`);
    else if (expired > 0) notes.push(`${expired} entries expired under the retention policy (a retention record in the log covers them); every kept entry proves its inclusion in the signed root`);
  } else if (!rootMatches) {
    problems.push(
      mismatches.length > 0 ? "the entries do not hash to the checkpoint's root" : "the entries do not hash to the checkpoint's root, and they carry no inclusion proofs to name the entry: export again with proofs",
    );
  }
  if (previous && consistentWithPrevious === undefined) {
    if (empty.length > 0 && entries >= previous.size) notes.push("consistency with the earlier checkpoint cannot be recomputed offline across expired entries: ask the service for a consistency proof (GetConsistencyProof)");
    else {
      consistentWithPrevious = false;
      problems.push("the export is shorter than the earlier checkpoint");
    }
  }
  const ok = rootMatches && mismatches.length === 0 && problems.length === 0;
  return {
    ok,
    origin: checkpoint.origin,
    size: checkpoint.size,
    rootHash: Buffer.from(checkpoint.rootHash).toString("base64"),
    entries,
    ...(mismatches[0] ? { firstMismatch: mismatches[0] } : {}),
    mismatches,
    problems,
    ...(consistentWithPrevious !== undefined ? { consistentWithPrevious } : {}),
    expired,
    notes,
  };
}
