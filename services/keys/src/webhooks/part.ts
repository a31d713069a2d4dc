import { file_bulwark_keys_v1_webhook_service, WebhookService } from "@bulwark/contracts";
import type { KeysPart } from "../part.js";
import { registration } from "../registration.js";
import { WebhookSecretEntity, WebhookSecretVersionEntity } from "./entities.js";
import { WebhookServiceImpl } from "./webhook-service.js";

/** Webhook signing secrets and Standard Webhooks signatures: WebhookService. */
export const webhooksPart: KeysPart = {
  name: "webhooks",
  entities: [WebhookSecretEntity, WebhookSecretVersionEntity],
  registrations: (ctx) => [registration(WebhookService, file_bulwark_keys_v1_webhook_service, new WebhookServiceImpl({ db: ctx.deps.db, events: ctx.deps.events, envelope: ctx.envelope, afterCommit: () => ctx.deps.relay.nudge() }))],
};
