#!/usr/bin/env node
/**
 * `bulwark-keys`: administration of the keys service from a shell that can
 * reach its database, with the keys service's own configuration
 * (DATABASE_URL, DATABASE_SCHEMA, BULWARK_MASTER_KEYS).
 *
 *   bulwark-keys master-key new --id v2      # prints a new keyring entry "v2:<base64 32 bytes>"
 *   bulwark-keys rewrap-master               # re-wraps every stored data key with the active master key
 *
 * Rotating the master key: put the new entry first in BULWARK_MASTER_KEYS
 * (keeping the old ones), restart the keys replicas, run `rewrap-master`
 * (a progress bar on standard error; safe to interrupt and run again), then
 * remove the old entries and restart again.
 *
 * Exit codes: 0 done, 1 failed (a key does not open, database down), 2
 * usage error.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { ConfigError, describeError, loadConfig } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { keyProviderFromConfig, MasterKeyError } from "./master/index.js";
import { rewrapMasterKeys } from "./master/rewrap.js";
import { keysModule } from "./module.js";

const usage = `usage:
  bulwark-keys master-key new [--id <id>]
  bulwark-keys rewrap-master`;

/** A command line the CLI does not understand (exit code 2). */
class UsageError extends Error {
  override name = "UsageError";
}

async function rewrapMaster(): Promise<void> {
  const config = loadConfig("keys");
  const provider = keyProviderFromConfig(config);
  const db = await Database.open({ clientUrl: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, entities: [...keysModule.entities], poolMax: 2 });
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: "re-wrapping data keys [{bar}] {value}/{total} ({percentage}%)", hideCursor: true, noTTYOutput: true, notTTYSchedule: 1000 }, cliProgress.Presets.shades_classic);
  let started = false;
  try {
    const moved = await rewrapMasterKeys(db, provider, (done, total) => {
      if (!started) {
        bar.start(total, done);
        started = true;
      } else bar.update(done);
    });
    bar.stop();
    process.stderr.write(`${moved} data key version(s) now wrapped by master key "${provider.activeKeyId}"\n`);
  } finally {
    if (started) bar.stop();
    await db.close();
  }
}

async function run(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  if (group === "rewrap-master" && command === undefined) return rewrapMaster();
  if (group === "master-key" && command === "new") {
    const { values } = parseArgs({ args: rest, options: { id: { type: "string" } }, strict: true });
    const id = values.id ?? `v${Math.floor(Date.now() / 1000)}`;
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id)) throw new UsageError("--id must be 1-32 letters, digits, _ or -");
    process.stdout.write(`${id}:${randomBytes(32).toString("base64")}\n`);
    return;
  }
  throw new UsageError(`unknown command ${[group, command].filter(Boolean).join(" ") || "(none)"}`);
}

try {
  await run(process.argv.slice(2));
  process.exitCode = 0;
} catch (err) {
  if (err instanceof UsageError || (err instanceof Error && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))) {
    process.stderr.write(`bulwark-keys: ${err.message}\n${usage}\n`);
    process.exitCode = 2;
  } else if (err instanceof ConfigError || err instanceof MasterKeyError) {
    process.stderr.write(`bulwark-keys: ${err.message}\n`);
    process.exitCode = 1;
  } else {
    const d = describeError(err);
    process.stderr.write(`bulwark-keys: ${d.message}\n`);
    process.exitCode = 1;
  }
}
