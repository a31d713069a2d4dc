import type { ServiceImpl } from "@connectrpc/connect";
import { ErasureMethod, type CategoryErasure, type DataSubjectParticipant, type DescribeSubjectDataRequest, type EraseSubjectDataRequest, type EraseTenantDataRequest, type ExportSubjectDataRequest, type RectifySubjectDataRequest } from "@bulwark/contracts";
import type { Database } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { erased, exportSchema, holdOn, inErasedTenant, inSubjectTenant, nothingToRectify, retained } from "@bulwark/server";
import { revokeRow } from "../apikeys/api-key-service.js";
import { queryRows } from "../apikeys/rows.js";
import type { KeyRings } from "../encryption/rings.js";

/** What the keys participant needs. */
export interface KeysParticipantDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly rings: KeyRings;
  readonly afterCommit?: () => void;
}

const schema = exportSchema("keys", {
  api_keys: { id: "string", name: "string", environment: "string", scopes: "string[]", state: "string", created_at: "string", expires_at: "string", revoked_at: "string?", last_used_at: "string?" },
  subject_key: { id: "string", state: "string", created_at: "string", destroyed_at: "string?" },
});

const iso = (d: unknown): string | null => (d === null || d === undefined ? null : new Date(d as string).toISOString());

/**
 * bulwark.compliance.v1.DataSubjectParticipant for keys: a subject's API
 * keys (metadata; never a secret, which keys does not hold) and their
 * subject key ring. Erasure revokes and deletes their API keys and destroys
 * their key ring and their API keys' rings (audit seals a key's call values
 * under the key's id when the event names no owner), which crypto-shreds everything encrypted under it mesh-
 * wide (their personal data in the audit trail) — unless a legal hold on
 * `audit_entries` or `subject_key` keeps it. A tenant's erasure deletes its
 * API keys, secrets and webhook secrets and destroys every ring of the
 * tenant (tombstones without key material stay, as evidence).
 */
export class KeysParticipantImpl implements ServiceImpl<typeof DataSubjectParticipant> {
  readonly #d: KeysParticipantDeps;

  constructor(deps: KeysParticipantDeps) {
    this.#d = deps;
  }

  async describeSubjectData(req: DescribeSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const [keys, ring] = await this.#d.db.transaction(async (em) =>
        Promise.all([
          em.execute<{ n: string }[]>("select count(*)::text as n from api_keys where owner_id = ?", [s.subjectId]),
          em.execute<{ n: string }[]>("select count(*)::text as n from key_rings where kind = 'subject' and subject_id = ? and state <> 'destroyed'", [s.subjectId]),
        ]),
      );
      return {
        service: "keys",
        categories: [
          { name: "api_keys", description: "API keys the subject created (metadata; secrets are never stored)", recordCount: BigInt(keys[0]!.n), erasure: ErasureMethod.DELETE },
          { name: "subject_key", description: "The subject's key ring, under which their personal data elsewhere is encrypted", recordCount: BigInt(ring[0]!.n), erasure: ErasureMethod.CRYPTO_SHRED },
        ],
      };
    });
  }

  async exportSubjectData(req: ExportSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const [keys, rings] = await this.#d.db.transaction(async (em) =>
        Promise.all([
          em.execute<Record<string, unknown>[]>("select id, name, environment, scopes, state, created_at, expires_at, revoked_at, last_used_at from api_keys where owner_id = ? order by created_at", [s.subjectId]),
          em.execute<Record<string, unknown>[]>("select id, state, created_at, destroyed_at from key_rings where kind = 'subject' and subject_id = ?", [s.subjectId]),
        ]),
      );
      const document = {
        api_keys: keys.map((k) => ({ id: k["id"], name: k["name"], environment: k["environment"], scopes: k["scopes"], state: k["state"], created_at: iso(k["created_at"]), expires_at: iso(k["expires_at"]), revoked_at: iso(k["revoked_at"]), last_used_at: iso(k["last_used_at"]) })),
        subject_key: rings.map((r) => ({ id: r["id"], state: r["state"], created_at: iso(r["created_at"]), destroyed_at: iso(r["destroyed_at"]) })),
      };
      return { service: "keys", documentJson: JSON.stringify(document), schemaJson: schema, recordCount: BigInt(keys.length + rings.length) };
    });
  }

  async eraseSubjectData(req: EraseSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const now = new Date();
      const out: CategoryErasure[] = [];
      // Read before the keys go: audit seals an API key's call values under the key's id when the event names no owner.
      const keyIds = await this.#d.db.transaction(async (em) => (await em.execute<{ id: string }[]>("select id from api_keys where owner_id = ?", [s.subjectId])).map((r) => r.id));
      const keyHold = holdOn(req.legalHolds, "api_keys", now);
      if (keyHold !== undefined) {
        const n = await this.#d.db.transaction(async (em) => (await em.execute<{ n: string }[]>("select count(*)::text as n from api_keys where owner_id = ?", [s.subjectId]))[0]!.n);
        out.push(retained("api_keys", keyHold, Number(n)));
      } else {
        const n = await this.#d.db.transaction(async (em) => {
          const rows = await queryRows(em, "select * from api_keys where owner_id = ? for update", [s.subjectId]);
          for (const row of rows) if (row.state === "active") await revokeRow(em, this.#d.events, row, "owner_deleted", now);
          await em.execute("delete from api_keys where owner_id = ?", [s.subjectId]);
          return rows.length;
        });
        this.#d.afterCommit?.();
        out.push(erased("api_keys", n));
      }
      const ringHold = holdOn(req.legalHolds, "subject_key", now) ?? holdOn(req.legalHolds, "audit_entries", now);
      if (ringHold !== undefined) {
        out.push(retained("subject_key", ringHold, 1));
      } else {
        const reason = `data subject erasure ${req.requestId}`.trim();
        const r = await this.#d.rings.destroy({ scope: { kind: "subject", tenantId: s.tenantId, subjectId: s.subjectId } }, reason);
        // The rings of their API keys too (audit's address and user agent of a key's calls): the owner's data as well.
        let keyRings = 0;
        for (const id of keyIds) if ((await this.#d.rings.destroy({ scope: { kind: "subject", tenantId: s.tenantId, subjectId: id } }, reason)).destroyedNow) keyRings++;
        const note = r.destroyedNow ? "destroyed: ciphertext under it is unreadable everywhere" : "already destroyed";
        out.push(erased("subject_key", 1 + keyRings, keyIds.length === 0 ? note : `${note}; with the rings of their ${keyIds.length} API key(s)`));
      }
      return { service: "keys", categories: out };
    });
  }

  async rectifySubjectData(req: RectifySubjectDataRequest) {
    // API keys' names and owners are the tenant's labels, not facts about the person to correct; key rings hold no values.
    return inSubjectTenant(req.subject, async () => nothingToRectify("keys", req.corrections, "keys holds no correctable personal field"));
  }

  async eraseTenantData(req: EraseTenantDataRequest) {
    return inErasedTenant(req.tenantId, async () => {
      const counts = await this.#d.db.transaction(async (em) => {
        const del = async (table: string): Promise<number> => (await em.execute<{ n: string }[]>(`with d as (delete from ${table} where tenant_id = ? returning 1) select count(*)::text as n from d`, [req.tenantId]))[0]!.n as unknown as number;
        return { apiKeys: Number(await del("api_keys")), secrets: Number(await del("secrets")), webhooks: Number(await del("webhook_secrets")) };
      });
      const rings = await this.#d.db.transaction((em) => em.execute<{ id: string; state: string; kind: string }[]>("select id, state, kind from key_rings where tenant_id = ?", [req.tenantId]));
      // As for one subject's erasure: a hold on the subject keys or on the audit trail keeps the subjects' rings, so the held trail stays readable.
      const ringHold = holdOn(req.legalHolds, "subject_key") ?? holdOn(req.legalHolds, "audit_entries");
      const held = ringHold === undefined ? [] : rings.filter((r) => r.kind === "subject" && r.state !== "destroyed");
      let destroyed = 0;
      for (const r of rings) {
        if (r.state === "destroyed" || held.includes(r)) continue;
        await this.#d.rings.destroy({ ringId: r.id }, `tenant deletion ${req.deletionId}`.trim());
        destroyed++;
      }
      return {
        service: "keys",
        categories: [
          erased("api_keys", counts.apiKeys),
          erased("secrets", counts.secrets),
          erased("webhook_secrets", counts.webhooks),
          erased("key_rings", rings.length - held.length, `${destroyed} destroyed now`),
          ...(ringHold !== undefined ? [retained("subject_key", ringHold, held.length)] : []),
        ],
      };
    });
  }
}
