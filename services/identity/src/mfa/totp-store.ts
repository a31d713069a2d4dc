import type { EntityManager } from "@bulwark/db";
import type { RefusedCheck } from "../auth/refusals.js";
import { matchingStep } from "./totp.js";

/**
 * Where the TOTP credentials of one kind of account live: users'
 * (`totp_credentials`, tenant-owned) or platform operators'
 * (`operator_totp_credentials`, platform). Both follow the same rules, in
 * the same SQL: a secret pending until confirmed, and a last accepted time
 * step that only moves forward, in one conditional UPDATE, so a code is
 * accepted once even across replicas.
 */
export interface TotpTable {
  readonly table: "totp_credentials" | "operator_totp_credentials";
  /** The column naming the account. */
  readonly owner: "user_id" | "operator_id";
}

/** Users' TOTP credentials. */
export const userTotp: TotpTable = { table: "totp_credentials", owner: "user_id" };
/** Platform operators' TOTP credentials. */
export const operatorTotp: TotpTable = { table: "operator_totp_credentials", owner: "operator_id" };

/** A stored TOTP credential. */
export interface TotpCredentialRow {
  secret_ciphertext: Buffer;
  confirmed_at: Date | null;
  last_used_step: string | number;
}

/** The account's TOTP credential, if any (`lock`: for update). */
export async function totpCredentialOf(em: EntityManager, t: TotpTable, ownerId: string, lock: boolean): Promise<TotpCredentialRow | undefined> {
  return (await em.execute<TotpCredentialRow[]>(`select secret_ciphertext, confirmed_at, last_used_step from ${t.table} where ${t.owner} = ?${lock ? " for update" : ""}`, [ownerId]))[0];
}

/**
 * Stores a new pending secret (sealed) for the account, replacing a
 * pending one; false when a confirmed credential exists (nothing changed).
 */
export async function startTotpEnrolment(em: EntityManager, t: TotpTable, ownerId: string, tenantId: string | null, sealed: Buffer): Promise<boolean> {
  const existing = await totpCredentialOf(em, t, ownerId, true);
  if (existing !== undefined && existing.confirmed_at !== null) return false;
  await em.execute(
    `insert into ${t.table} (${t.owner}, tenant_id, secret_ciphertext, confirmed_at, last_used_step, created_at) values (?, ?, ?, null, 0, now())
     on conflict (${t.owner}) do update set secret_ciphertext = excluded.secret_ciphertext, last_used_step = 0, created_at = now() where ${t.table}.confirmed_at is null`,
    [ownerId, tenantId, sealed],
  );
  return true;
}

/** What confirming a pending enrolment found. */
export type TotpConfirmation = "confirmed" | "wrong_code" | "none_pending" | "already_confirmed";

/**
 * Confirms the account's pending secret with a current code (its step is
 * spent), inside the caller's transaction; `secretOf` opens the sealed
 * secret.
 */
export async function confirmTotpEnrolment(em: EntityManager, t: TotpTable, ownerId: string, secretOf: (cred: TotpCredentialRow) => Promise<string>, code: string, nowMs: number): Promise<TotpConfirmation> {
  const cred = await totpCredentialOf(em, t, ownerId, true);
  if (cred === undefined) return "none_pending";
  if (cred.confirmed_at !== null) return "already_confirmed";
  const step = matchingStep(await secretOf(cred), code, nowMs);
  if (step === undefined) return "wrong_code";
  await em.execute(`update ${t.table} set confirmed_at = now(), last_used_step = ? where ${t.owner} = ?`, [step, ownerId]);
  return "confirmed";
}

/**
 * Spends a TOTP code of the account inside the caller's transaction: the
 * code must match a step within the window that is later than the last one
 * accepted, and the step is recorded atomically, so a concurrent or later
 * use of the same step fails. Undefined when the code holds, else the check
 * that refused it.
 */
export async function spendTotpCode(em: EntityManager, t: TotpTable, ownerId: string, secretOf: (cred: TotpCredentialRow) => Promise<string>, code: string, nowMs: number): Promise<RefusedCheck | undefined> {
  const cred = await totpCredentialOf(em, t, ownerId, false);
  if (cred === undefined || cred.confirmed_at === null) return "factor_missing";
  const step = matchingStep(await secretOf(cred), code, nowMs);
  if (step === undefined) return "wrong_code";
  if (step <= Number(cred.last_used_step)) return "replayed_code";
  const advanced = await em.execute<{ owner: string }[]>(`update ${t.table} set last_used_step = ? where ${t.owner} = ? and confirmed_at is not null and last_used_step < ? returning ${t.owner} as owner`, [step, ownerId, step]);
  return advanced.length === 1 ? undefined : "replayed_code";
}

/**
 * Replaces a stored secret with its re-encryption (a row still in the
 * interim SecretBox layout, moved onto the keys service on first use),
 * only if the row still holds what was read.
 */
export async function resealTotp(em: EntityManager, t: TotpTable, ownerId: string, was: Buffer, sealed: Buffer): Promise<void> {
  await em.execute(`update ${t.table} set secret_ciphertext = ? where ${t.owner} = ? and secret_ciphertext = ?`, [sealed, ownerId, was]);
}
