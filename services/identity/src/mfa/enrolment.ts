import type { EntityManager } from "@bulwark/db";

/**
 * Recomputes `users.mfa_enrolled` from the factors a user actually has — a
 * confirmed TOTP credential or any passkey — after one is removed, so
 * removing one factor never hides another that remains.
 */
export async function syncMfaEnrolled(em: EntityManager, userId: string): Promise<void> {
  await em.execute(
    `update users set mfa_enrolled = (exists (select 1 from totp_credentials where user_id = ? and confirmed_at is not null) or exists (select 1 from passkeys where user_id = ?)),
       updated_at = now(), version = version + 1 where id = ?`,
    [userId, userId, userId],
  );
}

/** The second factors a user can answer an MFA challenge with. */
export async function mfaMethodsOf(em: EntityManager, userId: string): Promise<string[]> {
  const rows = await em.execute<{ totp: boolean; passkey: boolean }[]>(
    "select exists (select 1 from totp_credentials where user_id = ? and confirmed_at is not null) as totp, exists (select 1 from passkeys where user_id = ?) as passkey",
    [userId, userId],
  );
  const r = rows[0];
  return [...(r?.totp === true ? ["totp", "recovery_code"] : []), ...(r?.passkey === true ? ["passkey"] : [])];
}
