import { createHash } from "node:crypto";
import { create, isMessage, type DescField, type Message } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  contractRegistry,
  ActorKind,
  ActorType,
  AuditActorSchema,
  AuditEntrySchema,
  AuditResourceSchema,
  ChangedFieldSchema,
  FieldValueSchema,
  Outcome,
  type AuditEntry,
  type ChangedField,
  type Envelope,
  type FieldValue,
  type SealedValue,
} from "@bulwark/contracts";

/** What the mapping needs to keep values it must not keep plainly. */
export interface ValueKeeper {
  /** Undefined when the value cannot be sealed (the subject's key was destroyed): it is then not kept. */
  seal(tenantId: string, subjectId: string, value: string): Promise<SealedValue | undefined>;
  keyedHash(tenantId: string, value: string): Promise<string>;
}

/** Secrets: never kept in any form (only noted as present). */
const secretField = /(password|secret|token|totp|recovery_code|pepper|private|ciphertext|wrapped|credential|plaintext|otp|_hash$|^hash$|^code$)/;
/** Personal data: encrypted under the key of the person it is about (the data subject; the caller for the call's own values). */
const personalField = /(email|ip_address|^ip$|user_agent|device|display_name|first_name|last_name|full_name|given_name|family_name|^name$|phone|revealed_to)/;
/**
 * Free text written about a data subject in compliance's events (a request's
 * details and reasons, a rectification's note, a reviewer's comment):
 * personal data too, named by its path since `reason` alone is not.
 */
const personalPath = /^(request\.(details|state_reason|extension_reason)|item\.comment)$/;
/** Sensitive but not personal: a per-tenant keyed hash, so equal values correlate. */
const sensitiveField = /(url$|metadata|external_id)/;

/** The pseudo-tenant of platform-wide events (operators, tenant lifecycle outside a tenant). */
export const platformTenant = "platform";

/** compliance's values the generic rules would take for personal but are not: a review campaign's name. */
const compliancePlainField = /^review\.name$/;

/**
 * A request's `previous_state` is the old value of its `request.state`:
 * renamed so the two pair up as one changed field (old → new).
 */
function pairComplianceState(flat: Flat, envelope: Envelope): void {
  const previous = flat.get("previous_state");
  if (envelope.source !== "compliance" || previous === undefined || !flat.has("request.state")) return;
  flat.delete("previous_state");
  flat.set("request.previous_state", previous);
}

const actorTypes = new Map<ActorKind, ActorType>([
  [ActorKind.USER, ActorType.USER],
  [ActorKind.API_KEY, ActorType.API_KEY],
  [ActorKind.SERVICE, ActorType.SERVICE],
  [ActorKind.OPERATOR, ActorType.OPERATOR],
  [ActorKind.BOOTSTRAP, ActorType.BOOTSTRAP],
]);

/** `aud_` + 26 hex of SHA-256(event id): a redelivered event maps to the same entry id. */
export function entryIdOf(eventId: string): string {
  return `aud_${createHash("sha256").update(eventId).digest("hex").slice(0, 26)}`;
}

/** The action of an event type: the subject without the mesh prefix (`identity.user.suspended`). */
export function actionOf(type: string, prefix: string): string {
  return type.startsWith(`${prefix}.`) ? type.slice(prefix.length + 1) : type;
}

/** How an action ended, from its verb. */
export function outcomeOf(action: string): Outcome {
  const verb = action.split(".").at(-1) ?? "";
  if (/denied|authentication_failed|sign_in_failed|signin_failed|guessed|refused/.test(verb)) return Outcome.DENIED;
  if (/failed$/.test(verb)) return Outcome.FAILED;
  return Outcome.SUCCESS;
}

type Flat = Map<string, string>;

/** The payload's scalar fields, nested messages flattened with dots (two levels), lists joined with commas. */
export function flatten(message: Message, prefix = "", depth = 0, out: Flat = new Map()): Flat {
  const fields = fieldsOf(message);
  for (const field of fields) {
    const value = (message as unknown as Record<string, unknown>)[field.localName];
    const name = `${prefix}${field.name}`;
    if (field.fieldKind === "scalar" || field.fieldKind === "enum") {
      if (value === undefined || value === "" || value === 0 || value === 0n || value === false) continue;
      out.set(name, field.fieldKind === "enum" ? (field.enum.values.find((v) => v.number === value)?.name ?? String(value)) : scalarText(value));
    } else if (field.fieldKind === "list") {
      const list = value as unknown[];
      if (list.length > 0 && (field.listKind === "scalar" || field.listKind === "enum")) out.set(name, list.map(scalarText).join(","));
    } else if (field.fieldKind === "message" && value !== undefined && isMessage(value)) {
      if (field.message.typeName === "google.protobuf.Timestamp") out.set(name, timestampDate(value as Timestamp).toISOString());
      else if (depth < 2) flatten(value, `${name}.`, depth + 1, out);
    }
  }
  return out;
}

function fieldsOf(message: Message): readonly DescField[] {
  return contractRegistry.getMessage(message.$typeName)?.fields ?? [];
}

function scalarText(v: unknown): string {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  return String(v);
}

/** The data subject an event is about: the user it names, else the acting user. */
export function subjectOf(flat: Flat, envelope: Envelope, resourceType: string): string | undefined {
  // A data subject request names its subject, an access-review item the user holding the grant.
  for (const k of ["user_id", "user.id", "owner_user_id", "request.subject_id", "item.user_id"]) {
    const v = flat.get(k);
    if (v !== undefined && v.startsWith("usr_")) return v;
  }
  if (resourceType === "user" && envelope.aggregateId.startsWith("usr_")) return envelope.aggregateId;
  // compliance's inactive account names its user: they, not the job or officer acting, are the subject.
  const account = envelope.source === "compliance" ? flat.get("account.user_id") : undefined;
  if (account?.startsWith("usr_") === true) return account;
  if (envelope.actor?.kind === ActorKind.USER && envelope.actor.id !== "") return envelope.actor.id;
  return undefined;
}

/**
 * The person the call's own values (its address, user agent, the actor's
 * email) are about, whose key they are sealed under — not the entry's data
 * subject, so erasing the user an admin acted on leaves the admin's address
 * readable, and erasing the admin shreds it:
 * - a user or an operator acting: themselves;
 * - an API key: its owner when the event names the acting key's owner
 *   (`key.owner_user_id` / `owner_user_id` beside the key's own id), else
 *   the key itself (`key_…`: the only identity the event gives whoever
 *   holds it; `DestroySubjectKey {subject_id: key id}` shreds it);
 * - no credential (the publishing service itself is the actor: a sign-in,
 *   a failed one, a guessed code, a reset request — or nobody at all): the
 *   user or operator the payload names at its top (`user_id`,
 *   `operator_id`), whose attempt it was; a refused anonymous call names
 *   nobody;
 * - another service or the bootstrap credential: no person — undefined, so
 *   the address is a keyed hash and the user agent not kept.
 * Entries recorded before this rule keep their sealing (append-only): the
 * caller's values there are sealed under the entry's data subject.
 */
export function callerSubjectOf(flat: Flat, envelope: Envelope): string | undefined {
  const actor = envelope.actor;
  const id = actor?.id ?? "";
  if (id !== "" && (actor?.kind === ActorKind.USER || actor?.kind === ActorKind.OPERATOR)) return id;
  if (id !== "" && actor?.kind === ActorKind.API_KEY) {
    const keyId = flat.get("key.id") ?? flat.get("key_id") ?? flat.get("old_key_id");
    const owner = flat.get("key.owner_user_id") ?? flat.get("owner_user_id");
    return keyId === id && owner?.startsWith("usr_") === true ? owner : id;
  }
  // A call without a credential is published with the service itself as actor (libs/events' actorFor).
  if (id !== "" && !(actor?.kind === ActorKind.SERVICE && id === `svc_${envelope.source}`)) return undefined;
  for (const k of ["user_id", "operator_id"]) {
    const v = flat.get(k);
    if (v !== undefined && /^(usr|opr)_/.test(v)) return v;
  }
  return undefined;
}

/**
 * Maps one verified event to the entry audit stores, before it has a leaf
 * index or a recorded time: actor, tenant, action, resource, outcome and
 * the payload's fields as changed fields (`old_x`/`current_x` and `new_x`
 * pair up as old and new of `x`; others are new values), each kept plainly,
 * as a keyed hash, encrypted under the data subject's key, or only noted
 * as redacted (secrets). Values about the target are sealed under the
 * data subject (`subjectOf`); the caller's address, user agent and email
 * under the person they are about (`callerSubjectOf`).
 */
export async function entryOf(envelope: Envelope, payload: Message | undefined, prefix: string, keeper: ValueKeeper, tenantId: string): Promise<AuditEntry> {
  const action = actionOf(envelope.type, prefix);
  const resourceType = action.split(".")[1] ?? "";
  const flat = payload === undefined ? new Map<string, string>() : flatten(payload);
  pairComplianceState(flat, envelope);
  const subject = subjectOf(flat, envelope, resourceType);
  const redacted = (): FieldValue => create(FieldValueSchema, { kind: { case: "redacted", value: true } });
  const keep = async (name: string, value: string): Promise<FieldValue> => {
    if (envelope.source === "compliance" && compliancePlainField.test(name)) return create(FieldValueSchema, { kind: { case: "plain", value } });
    const leafName = name.split(".").at(-1) ?? name;
    if (secretField.test(leafName)) return redacted();
    if (personalField.test(leafName) || personalPath.test(name)) {
      if (subject !== undefined) {
        const sealed = await keeper.seal(tenantId, subject, value);
        return sealed === undefined ? redacted() : create(FieldValueSchema, { kind: { case: "sealed", value: sealed } });
      }
      return create(FieldValueSchema, { kind: { case: "keyedHash", value: await keeper.keyedHash(tenantId, value) } });
    }
    if (sensitiveField.test(leafName)) return create(FieldValueSchema, { kind: { case: "keyedHash", value: await keeper.keyedHash(tenantId, value) } });
    return create(FieldValueSchema, { kind: { case: "plain", value } });
  };
  const changed = new Map<string, ChangedField>();
  const field = (name: string): ChangedField => {
    let f = changed.get(name);
    if (f === undefined) {
      f = create(ChangedFieldSchema, { name });
      changed.set(name, f);
    }
    return f;
  };
  // Every value is asked for at once (the keeper batches the seals into one call), then assigned.
  const tasks: Promise<void>[] = [];
  const later = (value: Promise<FieldValue>, set: (v: FieldValue) => void): void => void tasks.push(value.then(set));
  for (const [name, value] of flat) {
    // The caller's address and user agent are kept once, as source_ip and user_agent.
    if (/(^|\.)(ip_address|ip|user_agent|device)$/.test(name)) continue;
    const m = /^(.*?)(old|current|previous|new)_(.+)$/.exec(name);
    if (m !== null && !/_id$/.test(name)) {
      const base = `${m[1]}${m[3]}`;
      const f = field(base);
      if (m[2] === "new") later(keep(base, value), (v) => (f.newValue = v));
      else later(keep(base, value), (v) => (f.oldValue = v));
    } else {
      const f = field(name);
      later(keep(name, value), (v) => (f.newValue = v));
    }
  }
  // The payload's own address and device first (a sign-in names them), else the call's as the envelope carries them.
  const ip = flat.get("ip_address") ?? flat.get("ip") ?? (envelope.clientIp || undefined);
  const agent = flat.get("user_agent") ?? flat.get("device") ?? (envelope.userAgent || undefined);
  // The call's values are the caller's: sealed under their own key, not the target's.
  const caller = callerSubjectOf(flat, envelope);
  // Without a person to seal it under, the address is kept as a keyed hash (so floods from one address correlate).
  // Asked for with the others (not awaited alone first): if keys refuses, no started seal is left rejecting unhandled.
  if (ip !== undefined && caller === undefined) {
    const f = field("ip_address");
    later(keeper.keyedHash(tenantId, ip).then((value) => create(FieldValueSchema, { kind: { case: "keyedHash", value } })), (v) => (f.newValue = v));
  }
  const count = Number(flat.get("count") ?? "1");
  const actorId = envelope.actor?.id ?? "";
  // The payload's email is the actor's own only when they acted on themselves.
  const actorEmail = caller !== undefined && subject === actorId && caller === actorId ? (flat.get("user.email") ?? flat.get("email")) : undefined;
  const traceId = envelope.traceparent.split("-")[1] ?? "";
  const [email, sourceIp, userAgent] = await Promise.all([
    actorEmail !== undefined && caller !== undefined ? keeper.seal(tenantId, caller, actorEmail) : undefined,
    ip !== undefined && caller !== undefined ? keeper.seal(tenantId, caller, ip) : undefined,
    agent !== undefined && caller !== undefined ? keeper.seal(tenantId, caller, agent) : undefined,
    ...tasks,
  ]);
  return create(AuditEntrySchema, {
    entryId: entryIdOf(envelope.id),
    tenantId,
    actor: create(AuditActorSchema, {
      type: actorId === "" ? ActorType.ANONYMOUS : (actorTypes.get(envelope.actor?.kind ?? ActorKind.UNSPECIFIED) ?? ActorType.UNSPECIFIED),
      id: actorId,
      // The roles the actor held when its credential was issued, as the publishing service's envelope names them.
      roles: (envelope.actor?.roles ?? []).filter((r) => r.length > 0 && r.length <= 128).slice(0, 50),
      viaService: envelope.actor?.viaService ?? "",
      ...(email !== undefined ? { email } : {}),
    }),
    action,
    resource: create(AuditResourceSchema, { type: resourceType, id: envelope.aggregateId }),
    outcome: outcomeOf(action),
    changedFields: [...changed.values()],
    ...(sourceIp !== undefined ? { sourceIp } : {}),
    ...(userAgent !== undefined ? { userAgent } : {}),
    requestId: envelope.requestId,
    traceId: /^[0-9a-f]{32}$/.test(traceId) ? traceId : "",
    occurredAt: envelope.occurTime,
    source: envelope.source,
    eventId: envelope.id,
    count: Number.isSafeInteger(count) && count > 0 ? count : 1,
    platform: envelope.platform,
    platformReason: envelope.platformReason,
  });
}
