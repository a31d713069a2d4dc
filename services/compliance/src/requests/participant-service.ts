import { ErasureMethod, type CategoryErasure, type DataSubjectParticipant, type DescribeSubjectDataRequest, type EraseSubjectDataRequest, type EraseTenantDataRequest, type ExportSubjectDataRequest, type RectifySubjectDataRequest } from "@bulwark/contracts";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Database } from "@bulwark/db";
import { erased, exportSchema, inErasedTenant, inSubjectTenant, nothingToRectify } from "@bulwark/server";
import type { CompliancePart } from "../part.js";

const schema = exportSchema("compliance", {
  requests: { id: "string", type: "string", state: "string", created_at: "string", due_at: "string", completed_at: "string?", state_reason: "string" },
});

/**
 * bulwark.compliance.v1.DataSubjectParticipant for compliance's own data:
 * the subject's requests (their history is part of their data; the records
 * stay, as evidence of the duty done, naming the subject by user id only:
 * an erasure blanks their free-text details) and their export bundles,
 * which an erasure deletes. A tenant's erasure
 * deletes its requests and legal holds, and whatever the other parts of
 * compliance hold about it (`CompliancePart.eraseTenant`).
 */
export class ComplianceParticipantImpl implements ServiceImpl<typeof DataSubjectParticipant> {
  readonly #db: Database;
  readonly #parts: () => readonly CompliancePart[];

  constructor(db: Database, parts: () => readonly CompliancePart[]) {
    this.#db = db;
    this.#parts = parts;
  }

  async describeSubjectData(req: DescribeSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const [r] = await this.#db.transaction((em) => em.execute<{ n: string; b: string }[]>("select count(*)::text as n, count(export_bundle)::text as b from dsr_requests where subject_id = ?", [s.subjectId]));
      return {
        service: "compliance",
        categories: [
          { name: "requests", description: "The subject's data-subject requests (kept as evidence; they name the subject by id only)", recordCount: BigInt(r!.n), erasure: ErasureMethod.RETAIN },
          { name: "exports", description: "Export bundles of the subject's data, deleted when they expire", recordCount: BigInt(r!.b), erasure: ErasureMethod.DELETE },
        ],
      };
    });
  }

  async exportSubjectData(req: ExportSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const rows = await this.#db.transaction((em) => em.execute<Record<string, unknown>[]>("select id, type, state, created_at, due_at, completed_at, state_reason from dsr_requests where subject_id = ? order by created_at", [s.subjectId]));
      const iso = (d: unknown) => (d === null ? null : new Date(d as string).toISOString());
      const requests = rows.map((r) => ({ ...r, created_at: iso(r["created_at"]), due_at: iso(r["due_at"]), completed_at: iso(r["completed_at"]) }));
      return { service: "compliance", documentJson: JSON.stringify({ requests }), schemaJson: schema, recordCount: BigInt(rows.length) };
    });
  }

  async eraseSubjectData(req: EraseSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const n = await this.#db.transaction(async (em) => {
        const rows = await em.execute<{ id: string }[]>(
          "update dsr_requests set export_bundle = null, export_expires_at = least(export_expires_at, now()) where subject_id = ? and export_bundle is not null returning id",
          [s.subjectId],
        );
        await em.execute("update dsr_steps set document = null where document is not null and request_id in (select id from dsr_requests where subject_id = ?)", [s.subjectId]);
        // The officers' free text may quote the person; the records stay by user id only.
        await em.execute("update dsr_requests set details = '' where subject_id = ? and details <> ''", [s.subjectId]);
        // So do the sealed values of rectifications (the field names stay).
        await em.execute("update dsr_requests set corrections = null where subject_id = ? and corrections is not null", [s.subjectId]);
        return rows.length;
      });
      const out: CategoryErasure[] = [erased("exports", n)];
      return { service: "compliance", categories: out };
    });
  }

  async rectifySubjectData(req: RectifySubjectDataRequest) {
    return inSubjectTenant(req.subject, async () => nothingToRectify("compliance", req.corrections, "compliance names the subject by id only"));
  }

  async eraseTenantData(req: EraseTenantDataRequest) {
    return inErasedTenant(req.tenantId, async () => {
      const out: CategoryErasure[] = [];
      await this.#db.transaction(async (em) => {
        const requests = await em.execute<{ id: string }[]>("delete from dsr_requests where tenant_id = ? returning id", [req.tenantId]);
        // The holds in force outlive the tenant: they are why the rest of the deletion keeps what it keeps, and the saga reads them for every later step.
        const inForce = [...new Set(req.legalHolds.map((h) => h.category))];
        const ended = (await em.execute<{ id: string; category: string }[]>("select id, category from legal_holds where tenant_id = ?", [req.tenantId])).filter((h) => !inForce.includes(h.category));
        for (const h of ended) await em.execute("delete from legal_holds where id = ?", [h.id]);
        const holds = ended;
        out.push(erased("requests", requests.length), erased("legal_holds", holds.length, inForce.length === 0 ? "" : `the holds in force on ${inForce.join(", ")} are kept until they end`));
        for (const p of this.#parts()) if (p.eraseTenant !== undefined) out.push(...(await p.eraseTenant(em, req.tenantId)));
      });
      return { service: "compliance", categories: out };
    });
  }
}
