/**
 * deploy/compose.yaml without Docker: the steps its containers take, from a
 * clean copy of the built repository with production dependencies only
 * (`npm ci --omit=dev`, as the image's `npm prune --omit=dev`): each
 * service's migrate.js, then its main.js with the environment compose gives
 * it (database, NATS and the other services moved to the test's own
 * schemas, subject prefix and ports), and the compose health check command
 * itself until it passes. Also checks that every service that exists is in
 * compose.yaml with its migration, health check and start order.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "js-yaml";
import { nuid } from "@nats-io/nuid";
import { adminUrl, dropTestService, natsUrl, testDatabase } from "../support/harness.js";
import { freePort } from "../support/ports.js";
import { builtServices, urlVariable, type MeshService } from "../support/process-mesh.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}
const compose = load(readFileSync(join(root, "deploy/compose.yaml"), "utf8")) as { services: Record<string, ComposeService> };

const run = (cmd: string, args: string[], cwd: string, timeoutMs: number): { status: number | null; out: string } => {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: timeoutMs, env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp" } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

describe("compose.yaml, step by step, from a clean copy with production dependencies only", { timeout: 300_000 }, () => {
  const services = builtServices();
  let copy = "";
  const id = nuid.next().toLowerCase().slice(-10);
  const prefix = `tcompose${id}`;
  const schemaOf = (s: MeshService): string => `t_compose_${s}_${id}`;
  const children: ChildProcess[] = [];

  before(() => {
    copy = mkdtempSync(join(tmpdir(), "bulwark-compose-"));
    // The repository as built (dist included), without installed modules or VCS: the image's build context after `npm run build`.
    cpSync(root, copy, { recursive: true, filter: (src) => !/(^|\/)(node_modules|\.git|\.turbo)(\/|$)/.test(src.slice(root.length)) });
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    for (const s of services) await dropTestService(schemaOf(s), prefix, s);
    if (copy !== "") rmSync(copy, { recursive: true, force: true });
  });

  test("lists every service that exists, each migrated first and health-checked", () => {
    for (const s of services) {
      const svc = compose.services[s];
      const mig = compose.services[`migrate-${s}`];
      assert.ok(svc !== undefined && mig !== undefined, `${s} and migrate-${s} are in compose.yaml`);
      assert.deepEqual(mig.command, ["node", `services/${s}/dist/src/migrate.js`]);
      assert.deepEqual(svc.command, ["node", `services/${s}/dist/src/main.js`]);
      assert.equal(svc.depends_on?.[`migrate-${s}`]?.condition, "service_completed_successfully");
      assert.equal(svc.depends_on?.["postgres"]?.condition, "service_healthy");
      assert.equal(svc.depends_on?.["nats"]?.condition, "service_healthy");
      assert.ok(svc.healthcheck?.test.includes(`http://127.0.0.1:${svc.environment?.["PORT"]}`), `${s}'s health check calls its own port`);
    }
    for (const dep of ["postgres", "nats"]) assert.ok(compose.services[dep]?.healthcheck !== undefined, `${dep} has a health check`);
  });

  test("npm ci --omit=dev, then each service migrates, starts and answers its compose health check", async () => {
    const installed = run("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund"], copy, 240_000);
    assert.equal(installed.status, 0, installed.out.slice(-3000));
    // Nothing a service needs at run time may be a devDependency: TypeScript is gone, so is turbo.
    assert.equal(run(process.execPath, ["-e", "import('typescript').then(() => process.exit(1), () => process.exit(0))"], copy, 10_000).status, 0, "devDependencies are not installed");

    const ports = Object.fromEntries(await Promise.all(services.map(async (s) => [s, await freePort()] as const))) as Record<MeshService, number>;
    const admin = new URL(adminUrl);
    admin.pathname = `/${testDatabase}`;
    for (const s of services) {
      const declared = compose.services[s]!.environment!;
      const app = new URL(admin.toString());
      app.username = `${schemaOf(s)}_app`;
      app.password = "";
      const env: Record<string, string> = {
        ...declared,
        // Where compose's postgres, nats and service names point, here.
        DATABASE_ADMIN_URL: admin.toString(),
        DATABASE_URL: app.toString(),
        DATABASE_SCHEMA: schemaOf(s),
        NATS_URL: natsUrl,
        EVENTS_SUBJECT_PREFIX: prefix,
        HOST: "127.0.0.1",
        PORT: String(ports[s]),
        LOG_LEVEL: "warn",
        ...Object.fromEntries(services.map((o) => [urlVariable(o), `http://127.0.0.1:${ports[o]}`])),
        PATH: process.env["PATH"] ?? "",
      };
      const migrate = spawnSync(process.execPath, compose.services[`migrate-${s}`]!.command!.slice(1), { cwd: copy, env, encoding: "utf8", timeout: 60_000 });
      assert.equal(migrate.status, 0, `${s} migrations: ${migrate.stdout}${migrate.stderr}`);
      const child = spawn(process.execPath, compose.services[s]!.command!.slice(1), { cwd: copy, env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (out += d));
      children.push(child);
      // compose's health check command, pointed at this port, until it passes (compose retries it the same way).
      const check = compose.services[s]!.healthcheck!.test.slice(1).map((a) => a.replace(/http:\/\/127\.0\.0\.1:\d+/, `http://127.0.0.1:${ports[s]}`));
      const deadline = Date.now() + 60_000;
      for (;;) {
        const r = await new Promise<number | null>((resolve) => spawn(check[0] === "node" ? process.execPath : check[0]!, check.slice(1), { cwd: copy, stdio: "ignore" }).once("exit", resolve));
        if (r === 0) break;
        assert.ok(child.exitCode === null, `${s} exited: ${out.slice(-3000)}`);
        assert.ok(Date.now() < deadline, `${s} did not pass its health check within 60 s: ${out.slice(-3000)}`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    // A real RPC through the copy's tenancy: router, authorization, validation and the database.
    const rpc = run(process.execPath, ["deploy/scripts/smoke.mjs", `http://127.0.0.1:${ports.tenancy}`, "--health-service=", "--rpc=resolve-tenant"], copy, 30_000);
    assert.equal(rpc.status, 0, rpc.out);
  });
});
