import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateApiKey } from "@bulwark/core";
import { keysScan } from "../src/cli-keys.js";

test("keys scan reports file:line and the key id of real keys only, never the secret, and skips binaries and VCS metadata", async () => {
  const dir = await mkdtemp(join(tmpdir(), "bulwark-scan-"));
  try {
    const real = generateApiKey("live");
    const fake = `${real.key.slice(0, -1)}${real.key.endsWith("a") ? "b" : "a"}`;
    await mkdir(join(dir, "src"));
    await mkdir(join(dir, ".git"));
    await writeFile(join(dir, "src", "config.ts"), `export const a = 1;\nconst key = "${real.key}";\nconst notAKey = "${fake}";\n`);
    await writeFile(join(dir, ".git", "packed"), real.key);
    await writeFile(join(dir, "blob.bin"), Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(real.key)]));
    const result = await keysScan([dir]);
    assert.deepEqual(result.lines, [`${join(dir, "src", "config.ts")}:2: ${real.parsed.id} (live)`]);
    assert.equal(result.lookalikes, 1);
    assert.ok(!result.lines.join("\n").includes(real.parsed.secret));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
