import type { ServiceImpl } from "@connectrpc/connect";
import { TenantDeletedSchema, type DataSubjectParticipant, type DescribeSubjectDataRequest, type EraseSubjectDataRequest, type EraseTenantDataRequest, type ExportSubjectDataRequest, type RectifySubjectDataRequest } from "@bulwark/contracts";
import type { Database } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { lockSlug } from "../tenancy-service.js";
import { erased, exportSchema, inErasedTenant, inSubjectTenant, nothingToRectify } from "@bulwark/server";

/** What the tenancy participant needs. */
export interface TenancyParticipantDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly afterCommit?: () => void;
}

const schema = exportSchema("tenancy", {});

/**
 * bulwark.compliance.v1.DataSubjectParticipant for tenancy. Tenancy holds
 * tenants and their security policies and nothing about any person: a
 * subject's description and export are empty and their erasure touches
 * nothing (it says so). A closed tenant's erasure deletes its row and its
 * policy and publishes tenant.deleted; the tenant-status mirror keeps the
 * deleted tenant refused. Its slug stays behind as a tombstone
 * (retired_slugs: the slug, the tenant's id, the deletion, the time) so
 * CreateTenant never hands it out again.
 */
export class TenancyParticipantImpl implements ServiceImpl<typeof DataSubjectParticipant> {
  readonly #d: TenancyParticipantDeps;

  constructor(deps: TenancyParticipantDeps) {
    this.#d = deps;
  }

  async describeSubjectData(req: DescribeSubjectDataRequest) {
    return inSubjectTenant(req.subject, async () => ({ service: "tenancy", categories: [] }));
  }

  async exportSubjectData(req: ExportSubjectDataRequest) {
    return inSubjectTenant(req.subject, async () => ({ service: "tenancy", documentJson: "{}", schemaJson: schema, recordCount: 0n }));
  }

  async eraseSubjectData(req: EraseSubjectDataRequest) {
    return inSubjectTenant(req.subject, async () => ({ service: "tenancy", categories: [erased("personal_data", 0, "tenancy holds no personal data")] }));
  }

  async rectifySubjectData(req: RectifySubjectDataRequest) {
    return inSubjectTenant(req.subject, async () => nothingToRectify("tenancy", req.corrections, "tenancy holds no personal data"));
  }

  async eraseTenantData(req: EraseTenantDataRequest) {
    return inErasedTenant(req.tenantId, async () => {
      const n = await this.#d.db.transaction(async (em) => {
        await em.execute("delete from security_policies where tenant_id = ?", [req.tenantId]);
        const slug = (await em.execute<{ slug: string }[]>("select slug from tenants where id = ? for update", [req.tenantId]))[0]?.slug;
        // The same lock as CreateTenant's: a create of this slug sees either the row or its tombstone.
        if (slug !== undefined) await lockSlug(em, slug);
        const rows = await em.execute<{ id: string }[]>("delete from tenants where id = ? returning id", [req.tenantId]);
        if (slug !== undefined) {
          await em.execute("insert into retired_slugs (slug, tenant_id, deletion_id, retired_at) values (?, ?, ?, ?) on conflict (slug) do nothing", [slug, req.tenantId, req.deletionId, new Date()]);
        }
        if (rows.length > 0) await this.#d.events.publish(em, { aggregate: "tenant", verb: "deleted", aggregateId: req.tenantId, schema: TenantDeletedSchema, payload: { $typeName: TenantDeletedSchema.typeName, tenantId: req.tenantId, deletionId: req.deletionId } });
        return rows.length;
      });
      this.#d.afterCommit?.();
      return { service: "tenancy", categories: [erased("tenant", n)] };
    });
  }
}
