#!/usr/bin/env node
/** `npm run migrate`: applies every service's migrations (what `npm start` runs first). */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
for (const s of readdirSync(join(root, "services"))) {
  const script = join(root, "services", s, "dist", "src", "migrate.js");
  if (!existsSync(script)) continue;
  const r = spawnSync(process.execPath, [script], { stdio: "inherit", env: process.env });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
