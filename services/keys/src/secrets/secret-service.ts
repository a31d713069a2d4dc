import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  SecretDeletedSchema,
  SecretReadSchema,
  SecretSchema,
  SecretVersionAddedSchema,
  type DeleteSecretRequest,
  type GetSecretRequest,
  type ListSecretsRequest,
  type ListSecretVersionsRequest,
  type PutSecretRequest,
  type Secret,
  type SecretService,
} from "@bulwark/contracts";
import { currentContext, decodeCursor, encodeCursor, invalidArgument, newId, notFound } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { currentCaller, scopeOf, type Envelope } from "../encryption/envelope.js";

/** The purpose secrets are encrypted with (bound as associated data with the secret id and version). */
export const secretPurpose = "keys.secrets";

/** A stored secret's row. */
export interface SecretRow {
  id: string;
  tenant_id: string;
  name: string;
  description: string;
  current_version: number;
  rotation_period_s: number | null;
  reminded_version: number;
  created_at: Date;
  updated_at: Date;
  version_count?: number | string;
}

const columns = "s.id, s.tenant_id, s.name, s.description, s.current_version, s.rotation_period_s, s.reminded_version, s.created_at, s.updated_at, (select count(*) from secret_versions v where v.secret_id = s.id) as version_count";

/** The context a secret version's ciphertext is bound to. */
export function secretContext(id: string, version: number): Record<string, string> {
  return { secret_id: id, version: String(version) };
}

/** The wire form of a secret's metadata. */
export function secretToProto(r: SecretRow): Secret {
  const updated = new Date(r.updated_at);
  return create(SecretSchema, {
    id: r.id,
    name: r.name,
    description: r.description,
    currentVersion: r.current_version,
    versionCount: Number(r.version_count ?? 0),
    createTime: timestampFromDate(new Date(r.created_at)),
    updateTime: timestampFromDate(updated),
    ...(r.rotation_period_s !== null ? { rotationPeriod: durationFromMs(r.rotation_period_s * 1000), nextRotationTime: timestampFromDate(new Date(updated.getTime() + r.rotation_period_s * 1000)) } : {}),
  });
}

/** What SecretService needs. */
export interface SecretServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly envelope: Envelope;
  readonly afterCommit?: () => void;
}

/**
 * bulwark.keys.v1.SecretService: the credential vault. Values are
 * encrypted under the tenant's ring, bound to the secret's id and version;
 * only GetSecret decrypts, and each GetSecret records who read what.
 */
export class SecretServiceImpl implements ServiceImpl<typeof SecretService> {
  readonly #d: SecretServiceDeps;

  constructor(deps: SecretServiceDeps) {
    this.#d = deps;
  }

  async putSecret(req: PutSecretRequest) {
    if (req.value.length === 0) throw invalidArgument("value", "is required");
    const periodS = req.rotationPeriod === undefined ? undefined : Number(req.rotationPeriod.seconds);
    if (periodS !== undefined && periodS !== 0 && periodS < 86_400) throw invalidArgument("rotation_period", "must be at least 1 day (or 0 for no reminders)");
    const scope = scopeOf(currentCaller(), "", false);
    const actor = currentContext()?.principal?.id ?? "";
    const out = await this.#d.db.transaction(async (em) => {
      const now = new Date();
      await em.execute(
        "insert into secrets (id, tenant_id, name, description, current_version, rotation_period_s, created_at, updated_at) values (?, ?, ?, '', 0, null, ?, ?) on conflict (tenant_id, name) do nothing",
        [newId("sec"), scope.tenantId, req.name, now, now],
      );
      const row = (await em.execute<SecretRow[]>(`select ${columns} from secrets s where s.name = ? for update of s`, [req.name]))[0];
      if (row === undefined) throw notFound("secret");
      const version = row.current_version + 1;
      const sealed = await this.#d.envelope.encrypt(scope, req.value, secretPurpose, secretContext(row.id, version));
      await em.execute("insert into secret_versions (secret_id, version, tenant_id, ciphertext, size_bytes, created_by, created_at) values (?, ?, ?, ?, ?, ?, ?)", [row.id, version, row.tenant_id, sealed.ciphertext, req.value.length, actor, now]);
      await em.execute("update secrets set current_version = ?, updated_at = ?, description = coalesce(?, description), rotation_period_s = case when ?::boolean then ? else rotation_period_s end where id = ?", [
        version,
        now,
        req.description ?? null,
        periodS !== undefined,
        periodS === undefined || periodS === 0 ? null : periodS,
        row.id,
      ]);
      await this.#d.events.publish(em, { aggregate: "secret", verb: "version_added", aggregateId: row.id, schema: SecretVersionAddedSchema, payload: { $typeName: "bulwark.events.v1.SecretVersionAdded", secretId: row.id, name: row.name, version } });
      return { secret: (await selectByName(em, req.name))!, version };
    });
    this.#d.afterCommit?.();
    return { secret: secretToProto(out.secret), version: out.version };
  }

  async getSecret(req: GetSecretRequest) {
    const caller = currentCaller();
    scopeOf(caller, "", false);
    const ctx = currentContext();
    const out = await this.#d.db.transaction(async (em) => {
      const row = await selectByName(em, req.name);
      if (row === undefined) throw notFound("secret");
      const version = req.version === 0 ? row.current_version : req.version;
      const v = (await em.execute<{ ciphertext: Buffer }[]>("select ciphertext from secret_versions where secret_id = ? and version = ?", [row.id, version]))[0];
      if (v === undefined) throw notFound("secret version");
      const opened = await this.#d.envelope.decrypt(caller, v.ciphertext, secretPurpose, secretContext(row.id, version));
      await this.#d.events.publish(em, {
        aggregate: "secret",
        verb: "read",
        aggregateId: row.id,
        schema: SecretReadSchema,
        payload: { $typeName: "bulwark.events.v1.SecretRead", secretId: row.id, name: row.name, version, readerId: ctx?.principal?.id ?? "", viaService: ctx?.principal?.viaService ?? "" },
      });
      return { row, version, value: opened.plaintext };
    });
    this.#d.afterCommit?.();
    return { secret: secretToProto(out.row), version: out.version, value: out.value };
  }

  async listSecrets(req: ListSecretsRequest) {
    scopeOf(currentCaller(), "", false);
    const size = req.pageSize === 0 ? 50 : req.pageSize;
    const cursor = req.pageToken === "" ? undefined : decodeCursor(req.pageToken, "", "sec_");
    const rows = await this.#d.db.transaction((em) =>
      em.execute<SecretRow[]>(`select ${columns} from secrets s ${cursor !== undefined ? "where (s.created_at, s.id) < (?, ?)" : ""} order by s.created_at desc, s.id desc limit ?`, [...(cursor !== undefined ? [cursor.createdAt, cursor.id] : []), size + 1]),
    );
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return { secrets: page.map(secretToProto), nextPageToken: rows.length > size && last !== undefined ? encodeCursor({ createdAt: new Date(last.created_at), id: last.id, filter: "" }) : "" };
  }

  async listSecretVersions(req: ListSecretVersionsRequest) {
    scopeOf(currentCaller(), "", false);
    return this.#d.db.transaction(async (em) => {
      const row = await selectByName(em, req.name);
      if (row === undefined) throw notFound("secret");
      const versions = await em.execute<{ version: number; created_at: Date; created_by: string; size_bytes: number }[]>("select version, created_at, created_by, size_bytes from secret_versions where secret_id = ? order by version desc", [row.id]);
      return { secret: secretToProto(row), versions: versions.map((v) => ({ version: v.version, createTime: timestampFromDate(new Date(v.created_at)), createdBy: v.created_by, sizeBytes: v.size_bytes })) };
    });
  }

  async deleteSecret(req: DeleteSecretRequest) {
    scopeOf(currentCaller(), "", false);
    await this.#d.db.transaction(async (em) => {
      const row = await selectByName(em, req.name);
      if (row === undefined) throw notFound("secret");
      await em.execute("delete from secrets where id = ?", [row.id]);
      await this.#d.events.publish(em, { aggregate: "secret", verb: "deleted", aggregateId: row.id, schema: SecretDeletedSchema, payload: { $typeName: "bulwark.events.v1.SecretDeleted", secretId: row.id, name: row.name } });
    });
    this.#d.afterCommit?.();
    return {};
  }
}

async function selectByName(em: EntityManager, name: string): Promise<SecretRow | undefined> {
  return (await em.execute<SecretRow[]>(`select ${columns} from secrets s where s.name = ?`, [name]))[0];
}
