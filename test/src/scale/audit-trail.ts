/**
 * The audit checks of the scale-out and fault suites: signed checkpoints of
 * the test tenants' trees collected through the run (GetCheckpoint with
 * refresh, as an operator), each earlier one proved a prefix of the later
 * ones with GetConsistencyProof checked by libs/tlog's verifyConsistency,
 * and every committed event of every recorded stream found as exactly one
 * entry of its tenant's trail.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { AuditLogService } from "@bulwark/contracts";
import { auditSources } from "@bulwark/audit";
import { openCheckpoint, parseVerifierKey, verifyConsistency, type NoteVerifier, type VerifiedCheckpoint } from "@bulwark/tlog";
import pg from "pg";
import { meshBootstrapToken, type MeshService, type ProcessMesh } from "../support/process-mesh.js";
import { balancedClient, outboxEvents, sleep } from "./load.js";

/** The services whose streams audit records. */
export const auditedServices = (mesh: ProcessMesh): MeshService[] => mesh.services.filter((s) => auditSources.some((a) => a.service === s));

/** Checkpoints of the test tenants' trees, collected while the suite runs. */
export class AuditWatch {
  /** Every checkpoint seen, by tenant, in the order seen. */
  readonly checkpoints = new Map<string, VerifiedCheckpoint[]>();
  /** GetCheckpoint answers other than OK, by code (UNAVAILABLE while audit is away, NOT_FOUND before a trail exists). */
  readonly failures: Record<string, number> = {};
  /** What must never happen: INTERNAL or UNKNOWN answers, checkpoints that do not verify. */
  readonly bad: string[] = [];
  readonly #client;
  readonly #tenants: readonly string[];
  readonly #verifiers = new Map<string, NoteVerifier>();
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(mesh: ProcessMesh, tenantIds: readonly string[]) {
    this.#client = balancedClient(AuditLogService, mesh.urls("audit"), { authorization: `Bearer ${meshBootstrapToken}` });
    this.#tenants = tenantIds;
    for (const t of tenantIds) this.checkpoints.set(t, []);
  }

  /** Samples every tenant's checkpoint every `everyMs` until `stop()`. */
  start(everyMs = 2_000): this {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        await this.sample();
        await sleep(everyMs);
      }
    })();
    return this;
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  /** Asks for a fresh checkpoint of every tenant (signed now if the tree grew) and verifies its signature. */
  async sample(): Promise<void> {
    for (const tenantId of this.#tenants) {
      try {
        let verifier = this.#verifiers.get(tenantId);
        if (verifier === undefined) {
          verifier = parseVerifierKey((await this.#client.getVerifierKey({ tenantId }, { timeoutMs: 5_000 })).verifierKey);
          this.#verifiers.set(tenantId, verifier);
        }
        const { checkpoint } = await this.#client.getCheckpoint({ tenantId, refresh: true }, { timeoutMs: 5_000 });
        let cp: VerifiedCheckpoint;
        try {
          cp = openCheckpoint(checkpoint, verifier);
        } catch (err) {
          this.bad.push(`${tenantId}: a checkpoint does not verify (${String(err)})`);
          continue;
        }
        if (!cp.origin.endsWith(`/audit/${tenantId}`)) this.bad.push(`${tenantId}: checkpoint origin ${cp.origin}`);
        this.checkpoints.get(tenantId)!.push(cp);
      } catch (err) {
        const ce = ConnectError.from(err);
        const code = Code[ce.code];
        this.failures[code] = (this.failures[code] ?? 0) + 1;
        if (ce.code === Code.Internal || ce.code === Code.Unknown) this.bad.push(`${tenantId}: GetCheckpoint ${code} ${ce.rawMessage}`);
      }
    }
  }

  /**
   * Every tenant's checkpoints are prefixes of one another: equal sizes
   * have equal roots, and each checkpoint is proved consistent with the
   * next larger one and with the latest (so, transitively, with every
   * later one). Returns the problems and how many proofs were verified.
   */
  async checkConsistency(): Promise<{ problems: string[]; checkpoints: number; distinct: number; proofs: number; sizes: Record<string, number> }> {
    const problems = [...this.bad];
    let proofs = 0;
    let distinct = 0;
    let total = 0;
    const sizes: Record<string, number> = {};
    for (const [tenantId, seen] of this.checkpoints) {
      total += seen.length;
      const bySize = new Map<number, VerifiedCheckpoint>();
      for (const cp of seen) {
        const other = bySize.get(cp.size);
        if (other === undefined) bySize.set(cp.size, cp);
        else if (Buffer.compare(Buffer.from(other.rootHash), Buffer.from(cp.rootHash)) !== 0) problems.push(`${tenantId}: two checkpoints of size ${cp.size} with different roots`);
      }
      // Sizes never go back in the order seen (a tree only grows).
      for (let i = 1; i < seen.length; i++) if (seen[i]!.size < seen[i - 1]!.size) problems.push(`${tenantId}: checkpoint of size ${seen[i]!.size} after one of size ${seen[i - 1]!.size}`);
      const sorted = [...bySize.values()].sort((a, b) => a.size - b.size);
      distinct += sorted.length;
      const last = sorted.at(-1);
      sizes[tenantId] = last?.size ?? 0;
      if (last === undefined) continue;
      const pairs = new Set<string>();
      for (let i = 0; i < sorted.length - 1; i++) {
        pairs.add(`${i}:${i + 1}`);
        pairs.add(`${i}:${sorted.length - 1}`);
      }
      for (const pair of pairs) {
        const [a, b] = pair.split(":").map((x) => sorted[Number(x)]!) as [VerifiedCheckpoint, VerifiedCheckpoint];
        if (a.size === 0) continue;
        const { hashes } = await this.#client.getConsistencyProof({ tenantId, firstSize: BigInt(a.size), secondSize: BigInt(b.size) }, { timeoutMs: 10_000 });
        proofs++;
        if (!verifyConsistency(a.size, b.size, hashes, a.rootHash, b.rootHash)) problems.push(`${tenantId}: the checkpoint of size ${a.size} is not a prefix of the one of size ${b.size}`);
      }
    }
    return { problems, checkpoints: total, distinct, proofs, sizes };
  }
}

/**
 * Every committed event of every stream audit records is exactly one entry,
 * in its tenant's trail (platform-wide events in `platform`'s), and no entry
 * stands for an event no outbox holds; each tenant's leaves match its
 * entries, and `sizes` (the latest checkpoints) cover every entry.
 */
export async function checkAuditEntries(mesh: ProcessMesh, adminUrl: string, sizes: Record<string, number> = {}): Promise<{ problems: string[]; entries: number; events: number; byTenant: Record<string, number> }> {
  const problems: string[] = [];
  const audited = auditedServices(mesh);
  const events = (await outboxEvents(mesh, adminUrl)).filter((e) => audited.includes(e.service));
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const schema = mesh.schemaOf("audit");
    const rows = (await admin.query<{ tenant_id: string; event_id: string; n: number }>(`select tenant_id, event_id, count(*)::int as n from "${schema}".entries group by 1, 2`)).rows;
    const leaves = (await admin.query<{ tenant_id: string; n: number }>(`select tenant_id, count(*)::int as n from "${schema}".leaves group by 1`)).rows;
    const entriesOf = new Map<string, { tenant: string; n: number }[]>();
    const byTenant: Record<string, number> = {};
    let entries = 0;
    for (const r of rows) {
      (entriesOf.get(r.event_id) ?? entriesOf.set(r.event_id, []).get(r.event_id)!).push({ tenant: r.tenant_id, n: r.n });
      byTenant[r.tenant_id] = (byTenant[r.tenant_id] ?? 0) + r.n;
      entries += r.n;
    }
    const missing: string[] = [];
    const twice: string[] = [];
    const misplaced: string[] = [];
    for (const e of events) {
      const found = entriesOf.get(e.id) ?? [];
      const n = found.reduce((a, f) => a + f.n, 0);
      if (n === 0) missing.push(e.subject);
      else if (n > 1) twice.push(e.subject);
      else if (found[0]!.tenant !== (e.tenantId === "" ? "platform" : e.tenantId)) misplaced.push(e.subject);
    }
    const ids = new Set(events.map((e) => e.id));
    const orphans = [...entriesOf.keys()].filter((id) => !ids.has(id));
    if (missing.length > 0) problems.push(`${missing.length} of ${events.length} events have no audit entry (${missing.slice(0, 3).join(", ")})`);
    if (twice.length > 0) problems.push(`${twice.length} events have more than one audit entry (${twice.slice(0, 3).join(", ")})`);
    if (misplaced.length > 0) problems.push(`${misplaced.length} events recorded in another tenant's trail (${misplaced.slice(0, 3).join(", ")})`);
    if (orphans.length > 0) problems.push(`${orphans.length} audit entries stand for no committed event`);
    for (const l of leaves) if (l.n !== byTenant[l.tenant_id]) problems.push(`${l.tenant_id}: ${l.n} leaves but ${byTenant[l.tenant_id] ?? 0} entries`);
    for (const [tenantId, size] of Object.entries(sizes)) if (size !== (byTenant[tenantId] ?? 0)) problems.push(`${tenantId}: the latest checkpoint covers ${size} entries of ${byTenant[tenantId] ?? 0}`);
    return { problems, entries, events: events.length, byTenant };
  } finally {
    await admin.end();
  }
}
