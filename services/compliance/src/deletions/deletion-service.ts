import type { ServiceImpl } from "@connectrpc/connect";
import type { GetTenantDeletionRequest, TenantDeletionService } from "@bulwark/contracts";
import { notFound, runAsPlatform } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { stepColumns, type StepRow } from "../requests/store.js";
import { deletionToProto, type DeletionRow } from "./store.js";

/** bulwark.compliance.v1.TenantDeletionService: a closed tenant's deletion and each service's step. */
export class TenantDeletionServiceImpl implements ServiceImpl<typeof TenantDeletionService> {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async getTenantDeletion(req: GetTenantDeletionRequest) {
    const found = await runAsPlatform("reading a tenant deletion", () =>
      this.#db.transaction(async (em) => {
        const d = (await em.execute<DeletionRow[]>("select * from tenant_deletions where tenant_id = ? order by closed_at desc, id desc limit 1", [req.tenantId]))[0];
        if (d === undefined) return undefined;
        const steps = await em.execute<StepRow[]>(`select ${stepColumns} from tenant_deletion_steps where deletion_id = ? order by position`, [d.id]);
        return { d, steps };
      }),
    );
    if (found === undefined) throw notFound("tenant deletion");
    return { deletion: deletionToProto(found.d, found.steps) };
  }
}
