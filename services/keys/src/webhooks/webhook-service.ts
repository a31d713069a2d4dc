import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  WebhookSecretCreatedSchema,
  WebhookSecretDeletedSchema,
  WebhookSecretRotatedSchema,
  WebhookSecretSchema,
  type CreateWebhookSecretRequest,
  type DeleteWebhookSecretRequest,
  type GetWebhookSecretRequest,
  type RotateWebhookSecretRequest,
  type SignWebhookRequest,
  type WebhookSecret,
  type WebhookService,
} from "@bulwark/contracts";
import { alreadyExists, newId, newWebhookSecret, notFound, signWebhook } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { currentCaller, scopeOf, type Caller, type Envelope } from "../encryption/envelope.js";

/** The purpose webhook secrets are encrypted with (bound with the secret id and version). */
export const webhookPurpose = "keys.webhooks";
/** How long the previous secret keeps signing after a rotation, by default. */
const defaultOverlapS = 86_400;

interface WebhookRow {
  id: string;
  tenant_id: string;
  name: string;
  current_version: number;
  previous_valid_until: Date | null;
  created_at: Date;
  rotated_at: Date;
}

const columns = "id, tenant_id, name, current_version, previous_valid_until, created_at, rotated_at";

function contextOf(id: string, version: number): Record<string, string> {
  return { webhook_secret_id: id, version: String(version) };
}

function toProto(r: WebhookRow): WebhookSecret {
  return create(WebhookSecretSchema, {
    id: r.id,
    name: r.name,
    currentVersion: r.current_version,
    createTime: timestampFromDate(new Date(r.created_at)),
    rotateTime: timestampFromDate(new Date(r.rotated_at)),
    ...(r.previous_valid_until !== null ? { previousValidUntil: timestampFromDate(new Date(r.previous_valid_until)) } : {}),
  });
}

/** What WebhookService needs. */
export interface WebhookServiceDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly envelope: Envelope;
  readonly afterCommit?: () => void;
}

/**
 * bulwark.keys.v1.WebhookService: the tenant's webhook signing secrets
 * (stored encrypted, shown once) and Standard Webhooks signatures made with
 * them, through the helper in @bulwark/core (webhooks.ts).
 */
export class WebhookServiceImpl implements ServiceImpl<typeof WebhookService> {
  readonly #d: WebhookServiceDeps;

  constructor(deps: WebhookServiceDeps) {
    this.#d = deps;
  }

  async createWebhookSecret(req: CreateWebhookSecretRequest) {
    const scope = scopeOf(currentCaller(), "", false);
    const secret = newWebhookSecret();
    const row = await this.#d.db.transaction(async (em) => {
      const id = newId("whk");
      const now = new Date();
      const inserted = await em.execute<{ id: string }[]>("insert into webhook_secrets (id, tenant_id, name, current_version, created_at, rotated_at) values (?, ?, ?, 1, ?, ?) on conflict (tenant_id, name) do nothing returning id", [id, scope.tenantId, req.name, now, now]);
      if (inserted.length === 0) throw alreadyExists("webhook secret");
      const sealed = await this.#d.envelope.encrypt(scope, Buffer.from(secret, "utf8"), webhookPurpose, contextOf(id, 1));
      await em.execute("insert into webhook_secret_versions (webhook_secret_id, version, tenant_id, ciphertext, created_at) values (?, 1, ?, ?, ?)", [id, scope.tenantId, sealed.ciphertext, now]);
      await this.#d.events.publish(em, { aggregate: "webhook_secret", verb: "created", aggregateId: id, schema: WebhookSecretCreatedSchema, payload: { $typeName: "bulwark.events.v1.WebhookSecretCreated", webhookSecretId: id, name: req.name } });
      return (await byId(em, id))!;
    });
    this.#d.afterCommit?.();
    return { webhookSecret: toProto(row), secret };
  }

  async rotateWebhookSecret(req: RotateWebhookSecretRequest) {
    const scope = scopeOf(currentCaller(), "", false);
    const overlapS = req.overlap === undefined ? defaultOverlapS : Number(req.overlap.seconds);
    const secret = newWebhookSecret();
    const row = await this.#d.db.transaction(async (em) => {
      const r = await byId(em, req.id, true);
      if (r === undefined) throw notFound("webhook secret");
      const version = r.current_version + 1;
      const now = new Date();
      const until = new Date(now.getTime() + overlapS * 1000);
      const sealed = await this.#d.envelope.encrypt(scope, Buffer.from(secret, "utf8"), webhookPurpose, contextOf(r.id, version));
      await em.execute("insert into webhook_secret_versions (webhook_secret_id, version, tenant_id, ciphertext, created_at) values (?, ?, ?, ?, ?)", [r.id, version, r.tenant_id, sealed.ciphertext, now]);
      // Only the previous version overlaps; anything older stops signing now and is erased.
      await em.execute("delete from webhook_secret_versions where webhook_secret_id = ? and version < ?", [r.id, version - 1]);
      await em.execute("update webhook_secrets set current_version = ?, previous_valid_until = ?, rotated_at = ? where id = ?", [version, overlapS > 0 ? until : null, now, r.id]);
      await this.#d.events.publish(em, {
        aggregate: "webhook_secret",
        verb: "rotated",
        aggregateId: r.id,
        schema: WebhookSecretRotatedSchema,
        payload: { $typeName: "bulwark.events.v1.WebhookSecretRotated", webhookSecretId: r.id, version, previousValidUntilUnix: BigInt(overlapS > 0 ? Math.floor(until.getTime() / 1000) : 0) },
      });
      return (await byId(em, r.id))!;
    });
    this.#d.afterCommit?.();
    return { webhookSecret: toProto(row), secret };
  }

  async getWebhookSecret(req: GetWebhookSecretRequest) {
    scopeOf(currentCaller(), "", false);
    const row = await this.#d.db.transaction((em) => byId(em, req.id));
    if (row === undefined) throw notFound("webhook secret");
    return { webhookSecret: toProto(row) };
  }

  async listWebhookSecrets() {
    scopeOf(currentCaller(), "", false);
    const rows = await this.#d.db.transaction((em) => em.execute<WebhookRow[]>(`select ${columns} from webhook_secrets order by name limit 1000`));
    return { webhookSecrets: rows.map(toProto) };
  }

  async deleteWebhookSecret(req: DeleteWebhookSecretRequest) {
    scopeOf(currentCaller(), "", false);
    await this.#d.db.transaction(async (em) => {
      const r = await byId(em, req.id, true);
      if (r === undefined) throw notFound("webhook secret");
      await em.execute("delete from webhook_secrets where id = ?", [r.id]);
      await this.#d.events.publish(em, { aggregate: "webhook_secret", verb: "deleted", aggregateId: r.id, schema: WebhookSecretDeletedSchema, payload: { $typeName: "bulwark.events.v1.WebhookSecretDeleted", webhookSecretId: r.id, name: r.name } });
    });
    this.#d.afterCommit?.();
    return {};
  }

  async signWebhook(req: SignWebhookRequest) {
    const caller = currentCaller();
    scopeOf(caller, "", false);
    const now = new Date();
    const secrets = await this.#validSecrets(caller, req.id, now);
    const headers = signWebhook(secrets, req.messageId, req.payload, req.timestamp === undefined ? now : timestampDate(req.timestamp));
    return { webhookId: headers["webhook-id"], webhookTimestamp: headers["webhook-timestamp"], webhookSignature: headers["webhook-signature"] };
  }

  /** The secrets that sign now: the current one, and the previous one during its overlap. */
  async #validSecrets(caller: Caller, id: string, now: Date): Promise<string[]> {
    const { row, versions } = await this.#d.db.transaction(async (em) => {
      const r = await byId(em, id);
      if (r === undefined) throw notFound("webhook secret");
      const overlap = r.previous_valid_until !== null && new Date(r.previous_valid_until).getTime() > now.getTime();
      const lowest = overlap ? r.current_version - 1 : r.current_version;
      const vs = await em.execute<{ version: number; ciphertext: Buffer }[]>("select version, ciphertext from webhook_secret_versions where webhook_secret_id = ? and version between ? and ? order by version desc", [r.id, lowest, r.current_version]);
      return { row: r, versions: vs };
    });
    const out: string[] = [];
    for (const v of versions) out.push((await this.#d.envelope.decrypt(caller, v.ciphertext, webhookPurpose, contextOf(row.id, v.version))).plaintext.toString("utf8"));
    return out;
  }
}

async function byId(em: EntityManager, id: string, lock = false): Promise<WebhookRow | undefined> {
  return (await em.execute<WebhookRow[]>(`select ${columns} from webhook_secrets where id = ?${lock ? " for update" : ""}`, [id]))[0];
}
