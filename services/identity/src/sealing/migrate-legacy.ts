import { describeError, runAsPlatform, type Logger } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { SecretBox } from "../mfa/secret-box.js";
import type { KeysSealer } from "./keys-sealer.js";

/**
 * Moves identity's secrets still at rest in the interim layouts onto the
 * keys service: TOTP secrets sealed by SecretBox (byte 1) of users and
 * operators, and token-signing private keys stored as plain JWK. Each row
 * is re-encrypted through keys and replaced only if it is still the row
 * that was read (a concurrent first use may have moved it already).
 * Returns how many rows it moved; 0 once nothing is left.
 */
export async function migrateLegacySecrets(db: Database, sealer: KeysSealer): Promise<number> {
  const platform = <T>(why: string, fn: () => Promise<T>): Promise<T> => runAsPlatform(why, fn);
  let moved = 0;
  const users = await platform("find legacy TOTP secrets", () =>
    db.transaction((em) => em.execute<{ user_id: string; tenant_id: string; secret_ciphertext: Buffer }[]>("select user_id, tenant_id, secret_ciphertext from totp_credentials where get_byte(secret_ciphertext, 0) = ? limit 500", [SecretBox.version])),
  );
  for (const r of users) {
    const owner = { tenantId: r.tenant_id, userId: r.user_id };
    const { secret } = await sealer.openTotp(owner, r.secret_ciphertext);
    const sealed = await sealer.sealTotp(owner, secret);
    await platform("re-encrypt a TOTP secret through keys", () => db.transaction((em) => em.execute("update totp_credentials set secret_ciphertext = ? where user_id = ? and secret_ciphertext = ?", [sealed, r.user_id, r.secret_ciphertext])));
    moved++;
  }
  const operators = await platform("find legacy operator TOTP secrets", () =>
    db.transaction((em) => em.execute<{ operator_id: string; secret_ciphertext: Buffer }[]>("select operator_id, secret_ciphertext from operator_totp_credentials where get_byte(secret_ciphertext, 0) = ? limit 500", [SecretBox.version])),
  );
  for (const r of operators) {
    const owner = { operatorId: r.operator_id };
    const { secret } = await sealer.openTotp(owner, r.secret_ciphertext);
    const sealed = await sealer.sealTotp(owner, secret);
    await platform("re-encrypt an operator's TOTP secret through keys", () => db.transaction((em) => em.execute("update operator_totp_credentials set secret_ciphertext = ? where operator_id = ? and secret_ciphertext = ?", [sealed, r.operator_id, r.secret_ciphertext])));
    moved++;
  }
  const keys = await platform("find plaintext signing keys", () => db.transaction((em) => em.execute<{ kid: string; private_jwk: string }[]>("select kid, private_jwk from signing_keys where private_jwk is not null limit 500")));
  for (const r of keys) {
    const sealed = await sealer.sealSigningKey(r.kid, r.private_jwk);
    await platform("encrypt a signing key through keys", () => db.transaction((em) => em.execute("update signing_keys set private_jwk_sealed = ?, private_jwk = null where kid = ? and private_jwk is not null", [sealed, r.kid])));
    moved++;
  }
  return moved;
}

/**
 * Runs migrateLegacySecrets in the background until a run finds nothing
 * left: soon after start, then every 30 seconds while keys cannot be
 * reached. Start-up never waits for keys.
 */
export class LegacySecretsMigration {
  readonly #db: Database;
  readonly #sealer: KeysSealer;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(db: Database, sealer: KeysSealer, logger: Logger) {
    this.#db = db;
    this.#sealer = sealer;
    this.#logger = logger;
  }

  start(firstDelayMs = 1_000): void {
    this.#timer = setTimeout(() => this.#tick(), firstDelayMs).unref();
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#running = (async () => {
      let again = false;
      try {
        const moved = await migrateLegacySecrets(this.#db, this.#sealer);
        if (moved > 0) this.#logger.info({ moved }, "secrets moved onto the keys service");
        again = moved > 0;
      } catch (err) {
        this.#logger.warn({ err: describeError(err) }, "cannot move secrets onto the keys service yet; retrying");
        again = true;
      }
      if (again && !this.#stopped) this.#timer = setTimeout(() => this.#tick(), 30_000).unref();
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
