import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ActorType, ErasureMethod, Outcome, type AuditEntry, type CategoryErasure, type DataSubjectParticipant, type DescribeSubjectDataRequest, type EraseSubjectDataRequest, type EraseTenantDataRequest, type EraseTenantDataResponse, type ExportSubjectDataRequest, type LegalHold, type RectifySubjectDataRequest } from "@bulwark/contracts";
import type { Database, EntityManager } from "@bulwark/db";
import { erased, exportSchema, holdOn, inErasedTenant, inSubjectTenant, nothingToRectify, retained } from "@bulwark/server";
import { openPersonal, sealedValuesOf } from "../log/personal.js";
import type { Privacy } from "../privacy/privacy.js";
import { entryOfLeaf } from "../tree/leaf.js";

/** What the audit participant needs. */
export interface AuditParticipantDeps {
  /** audit's runtime database (the app role: reads only on the trail). */
  readonly db: Database;
  /** The retention connection (`SET ROLE` to `retentionRole`), opened at start; the only way to delete from the trail. */
  readonly retention: () => { readonly db: Database; readonly role: string };
  readonly privacy: Privacy;
}

/** The category legal holds and the other participants (keys) name the subject's entries by. */
export const auditEntriesCategory = "audit_entries";

const schema = exportSchema("audit", {
  audit_entries: {
    entry_id: "string",
    leaf_index: "integer",
    recorded_at: "string",
    occurred_at: "string?",
    action: "string",
    outcome: "string",
    actor_type: "string",
    actor_id: "string",
    resource_type: "string",
    resource_id: "string",
    changed_fields: "string[]",
    request_id: "string",
    source: "string",
    personal: "object",
  },
});

/**
 * The subject's entries: where they acted or were acted on (entries_actor_idx,
 * entries_resource_idx), and any other entry whose leaf names them (a data
 * subject request, a review item, an API key they own: values sealed under
 * their key), narrowed by `isSubjects`. The last is a scan of the tenant's
 * leaves, as rare as data subject requests.
 */
const subjectWhere = "tenant_id = ? and (actor_id = ? or (resource_type = 'user' and resource_id = ?) or position(convert_to(?, 'UTF8') in leaf) > 0)";
const subjectParams = (tenantId: string, subjectId: string): string[] => [tenantId, subjectId, subjectId, subjectId];

/** Whether an entry is the subject's: they acted, were the user acted on, or a value in it is sealed under their key. */
function isSubjects(entry: AuditEntry, subjectId: string): boolean {
  if (entry.actor?.id === subjectId || (entry.resource?.type === "user" && entry.resource.id === subjectId)) return true;
  return sealedValuesOf(entry).some(([, v]) => v?.subjectId === subjectId);
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;
const iso = (t: AuditEntry["recordedAt"]): string | null => (t === undefined ? null : timestampDate(t).toISOString());
const enumName = (e: Record<number, string>, v: number): string => (e[v] ?? "UNSPECIFIED").toLowerCase();

/**
 * The personal values of an entry that are the subject's to receive: only
 * values sealed under their key (an admin's address in an action on them is
 * sealed under the admin's). Entries recorded before the call's values were
 * sealed under the caller have an acting admin's address, user agent and
 * email under the subject's key: those go only into the subject's own
 * actions and anonymous attempts on them (whose address is sealed under the
 * attempted user by rule), never another actor's.
 */
function ownPersonal(personal: Record<string, string>, entry: AuditEntry, subjectId: string): Record<string, string> {
  if (entry.actor?.id === subjectId || entry.actor?.type === ActorType.ANONYMOUS) return personal;
  return Object.fromEntries(Object.entries(personal).filter(([path]) => path !== "source_ip" && path !== "user_agent" && path !== "actor.email"));
}

/**
 * bulwark.compliance.v1.DataSubjectParticipant for audit: the subject's
 * entries in their tenant's trail (as actor or as the user acted on), with
 * their personal values decrypted while the subject key exists. Erasure
 * deletes nothing — the trail is append-only and every entry stays provable
 * — and relies on keys destroying the subject's key ring (crypto-
 * shredding): the entries and proofs stay, the person's values no longer
 * open. A legal hold on `audit_entries` is reported as such (keys then
 * keeps the ring too). A tenant's erasure removes its whole trail (entries,
 * leaves, tree nodes, checkpoints, hash key, monitoring state) through the
 * retention role.
 */
export class AuditParticipantImpl implements ServiceImpl<typeof DataSubjectParticipant> {
  readonly #d: AuditParticipantDeps;

  constructor(deps: AuditParticipantDeps) {
    this.#d = deps;
  }

  /** The subject's entries, oldest first. */
  async #entries(em: EntityManager, tenantId: string, subjectId: string): Promise<AuditEntry[]> {
    const rows = await em.execute<{ leaf: Buffer }[]>(`select leaf from entries where ${subjectWhere} order by recorded_at, leaf_index`, subjectParams(tenantId, subjectId));
    return rows.map((r) => entryOfLeaf(r.leaf)).filter((e) => isSubjects(e, subjectId));
  }

  #count(em: EntityManager, tenantId: string, subjectId: string): Promise<number> {
    return this.#entries(em, tenantId, subjectId).then((e) => e.length);
  }

  async describeSubjectData(req: DescribeSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const n = await this.#d.db.transaction((em) => this.#count(em, s.tenantId, s.subjectId));
      return {
        service: "audit",
        categories: [
          {
            name: auditEntriesCategory,
            description: "Audit trail entries where the subject acted, was acted on or is named (requests, reviews, their API keys); append-only and kept, the personal values about them (their address, user agent and email when they acted, changed values about them) encrypted under the subject's key",
            recordCount: BigInt(n),
            erasure: ErasureMethod.CRYPTO_SHRED,
          },
        ],
      };
    });
  }

  async exportSubjectData(req: ExportSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const entries = await this.#d.db.transaction((em) => this.#entries(em, s.tenantId, s.subjectId));
      const records = [];
      for (const e of entries) {
        records.push({
          entry_id: e.entryId,
          leaf_index: Number(e.leafIndex),
          recorded_at: iso(e.recordedAt),
          occurred_at: iso(e.occurredAt),
          action: e.action,
          outcome: enumName(Outcome, e.outcome),
          actor_type: enumName(ActorType, e.actor?.type ?? ActorType.UNSPECIFIED),
          actor_id: e.actor?.id ?? "",
          resource_type: e.resource?.type ?? "",
          resource_id: e.resource?.id ?? "",
          changed_fields: e.changedFields.map((f) => f.name),
          request_id: e.requestId,
          source: e.source,
          personal: ownPersonal(await openPersonal(this.#d.privacy, s.tenantId, e, s.subjectId), e, s.subjectId),
        });
      }
      return { service: "audit", documentJson: JSON.stringify({ audit_entries: records }), schemaJson: schema, recordCount: BigInt(records.length) };
    });
  }

  async eraseSubjectData(req: EraseSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const n = await this.#d.db.transaction((em) => this.#count(em, s.tenantId, s.subjectId));
      const hold = holdOn(req.legalHolds, auditEntriesCategory);
      const out: CategoryErasure[] = [
        hold !== undefined
          ? retained(auditEntriesCategory, hold, n)
          : erased(
              auditEntriesCategory,
              n,
              n === 0
                ? ""
                : "kept: the trail is append-only; the entries and their proofs stay verifiable, their personal values unreadable once keys destroys the subject's key",
            ),
      ];
      return { service: "audit", categories: out };
    });
  }

  async rectifySubjectData(req: RectifySubjectDataRequest) {
    // The trail records what was, append-only: a correction is not rewritten into it but recorded as a new entry from the owning service's event.
    return inSubjectTenant(req.subject, async () => nothingToRectify("audit", req.corrections, "the trail is append-only: the correction is recorded as a new entry, the old ones stay"));
  }

  async eraseTenantData(req: EraseTenantDataRequest) {
    return inErasedTenant(req.tenantId, async () => {
      const hold = holdOn(req.legalHolds, auditEntriesCategory);
      if (hold !== undefined) return this.#keepHeldTrail(req.tenantId, hold);
      const { db, role } = this.#d.retention();
      const counts = await db.transaction(async (em) => {
        await em.execute(`set local role ${quoteIdent(role)}`);
        const del = async (table: string): Promise<number> => Number((await em.execute<{ n: string }[]>(`with d as (delete from ${table} where tenant_id = ? returning 1) select count(*)::text as n from d`, [req.tenantId]))[0]!.n);
        return { entries: await del("entries"), leaves: await del("leaves"), nodes: await del("tree_nodes"), checkpoints: await del("checkpoints"), hashKeys: await del("hash_keys") };
      });
      const monitoring = await this.#d.db.transaction(async (em) => {
        let n = 0;
        for (const t of ["monitor_hits", "monitor_known", "monitor_fired", "monitor_settings", "retention_rules", "legal_holds"]) n += Number((await em.execute<{ n: string }[]>(`with d as (delete from ${t} where tenant_id = ? returning 1) select count(*)::text as n from d`, [req.tenantId]))[0]!.n);
        return n;
      });
      return {
        service: "audit",
        categories: [
          erased(auditEntriesCategory, counts.entries, `with ${counts.leaves} leaves; events after this step (keys destroying the rings, the deletion's completion) start a new trail for the tenant`),
          erased("audit_tree", counts.nodes + counts.checkpoints, `${counts.nodes} tree nodes, ${counts.checkpoints} signed checkpoints`),
          erased("audit_hash_key", counts.hashKeys),
          erased("audit_monitoring", monitoring),
        ],
      };
    });
  }

  /**
   * A closed tenant's trail under a legal hold on audit_entries: entries,
   * leaves, tree, checkpoints and hash key stay, so the trail stays
   * verifiable (and keys keeps the subjects' rings, so its personal values
   * stay readable). The local copies of the tenant's
   * retention rule and holds stay too, so retention keeps honouring the
   * hold and removes the trail by the rule once it ends; monitoring state
   * goes.
   */
  async #keepHeldTrail(tenantId: string, hold: LegalHold): Promise<EraseTenantDataResponse> {
    return this.#d.db.transaction(async (em) => {
      const count = async (table: string): Promise<number> => Number((await em.execute<{ n: string }[]>(`select count(*)::text as n from ${table} where tenant_id = ?`, [tenantId]))[0]!.n);
      const entries = await count("entries");
      const tree = (await count("tree_nodes")) + (await count("checkpoints"));
      let monitoring = 0;
      for (const t of ["monitor_hits", "monitor_known", "monitor_fired", "monitor_settings"]) monitoring += Number((await em.execute<{ n: string }[]>(`with d as (delete from ${t} where tenant_id = ? returning 1) select count(*)::text as n from d`, [tenantId]))[0]!.n);
      return {
        $typeName: "bulwark.compliance.v1.EraseTenantDataResponse",
        service: "audit",
        categories: [retained(auditEntriesCategory, hold, entries), retained("audit_tree", hold, tree), erased("audit_monitoring", monitoring)],
      };
    });
  }
}
