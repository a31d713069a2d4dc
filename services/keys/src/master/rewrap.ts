import { runAsPlatform } from "@bulwark/core";
import type { Database } from "@bulwark/db";
import { wrapBinding } from "../encryption/rings.js";
import type { KeyProvider } from "./provider.js";

/** Progress of a master-key re-wrap: `done` of `total` stored keys. */
export type RewrapProgress = (done: number, total: number) => void;

/**
 * Re-wraps every stored data key that is not wrapped by the provider's
 * active master key: unwrap with the old version, wrap with the active
 * one, in batches of 100 rows per transaction (each row locked while it
 * changes, so a concurrent destroy wins or waits). The data keys — and so
 * every ciphertext — stay the same; afterwards the old master key versions
 * can be removed from BULWARK_MASTER_KEYS. Safe to run again or to resume
 * after a crash: rows already moved are not touched. Returns how many rows
 * were re-wrapped.
 */
export async function rewrapMasterKeys(db: Database, provider: KeyProvider, onProgress: RewrapProgress = () => undefined): Promise<number> {
  return runAsPlatform("re-wrap every data key with the active master key", async () => {
    const active = provider.activeKeyId;
    const [count] = await db.transaction((em) => em.execute<{ n: string }[]>("select count(*) as n from key_versions where wrapped_key is not null and master_key_id <> ?", [active]));
    const total = Number(count?.n ?? 0);
    let done = 0;
    onProgress(done, total);
    for (;;) {
      const moved = await db.transaction(async (em) => {
        const rows = await em.execute<{ ring_id: string; version: number; wrapped_key: Buffer; master_key_id: string }[]>(
          "select ring_id, version, wrapped_key, master_key_id from key_versions where wrapped_key is not null and master_key_id <> ? order by ring_id, version limit 100 for update skip locked",
          [active],
        );
        for (const r of rows) {
          const binding = wrapBinding(r.ring_id, r.version);
          const key = await provider.unwrap(r.master_key_id, r.wrapped_key, binding);
          const { masterKeyId, wrapped } = await provider.wrap(key, binding);
          key.fill(0);
          await em.execute("update key_versions set wrapped_key = ?, master_key_id = ? where ring_id = ? and version = ?", [wrapped, masterKeyId, r.ring_id, r.version]);
        }
        return rows.length;
      });
      if (moved === 0) break;
      done += moved;
      onProgress(Math.min(done, total), total);
    }
    return done;
  });
}
