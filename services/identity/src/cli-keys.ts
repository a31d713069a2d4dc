import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { findApiKeys } from "@bulwark/core";

/** What `bulwark keys scan` found. */
export interface ScanResult {
  /** `file:line: key_… (live|test)` lines, one per real key (checksum valid). */
  readonly lines: string[];
  /** Key-shaped strings whose checksum failed (not real keys; not printed). */
  readonly lookalikes: number;
  readonly filesScanned: number;
}

/** Files larger than this are skipped (a scanner of source trees, not of disks). */
const maxFileBytes = 50 * 1024 * 1024;
const skippedDirectories = new Set([".git", ".hg", ".svn"]);

async function* filesUnder(path: string): AsyncGenerator<string> {
  const s = await stat(path);
  if (s.isFile()) {
    yield path;
    return;
  }
  if (!s.isDirectory()) return;
  const entries = await readdir(path, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.isDirectory() && skippedDirectories.has(e.name)) continue;
    if (e.isDirectory() || e.isFile()) yield* filesUnder(join(path, e.name));
  }
}

/**
 * `bulwark keys scan PATH...`: finds Bulwark API keys in files (directories
 * are walked, VCS metadata skipped, binary files — a NUL byte in the first
 * 8 KiB — and files over 50 MiB skipped) and checks each one's CRC32
 * checksum offline. Prints file:line and the key id only, never the
 * secret, so the output itself can be pasted into a ticket. The key ids
 * are enough to revoke the keys (ApiKeyService.RevokeApiKey) or to report
 * them (ReportExposedKeys needs the whole string, which stays in the file).
 */
export async function keysScan(paths: readonly string[]): Promise<ScanResult> {
  const lines: string[] = [];
  let lookalikes = 0;
  let filesScanned = 0;
  for (const root of paths) {
    for await (const file of filesUnder(root)) {
      if ((await stat(file)).size > maxFileBytes) continue;
      const bytes = await readFile(file);
      if (bytes.subarray(0, 8192).includes(0)) continue;
      filesScanned++;
      for (const k of findApiKeys(bytes.toString("utf8"))) {
        if (k.checksumValid) lines.push(`${file}:${k.line}: ${k.id} (${k.environment})`);
        else lookalikes++;
      }
    }
  }
  return { lines, lookalikes, filesScanned };
}
