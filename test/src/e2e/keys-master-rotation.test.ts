/**
 * The keys service's master keyring end to end: data encrypted under
 * master key v1 (tenant rings, a data subject's ring, the vault, a webhook
 * secret, a service ring), then `bulwark-keys rewrap-master` run as the
 * operator would with v2 active — a progress bar on standard error, every
 * stored key re-wrapped — and keys restarted with v2 alone: everything
 * still decrypts. The restarted keys runs as its own process at
 * LOG_LEVEL=debug, and neither its log, its events nor its errors carry a
 * plaintext, a secret value or key material. Production refuses to start
 * without a master key, naming the variable.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { keysModule } from "@bulwark/keys";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, dropTestService, startTestService, type Started } from "../support/harness.js";
import { allKeysPermissions, keysClients, keysEvents, keysQuery, newTenant, testMasterKeys, type KeysMesh } from "../contract/support-keys.js";
import { TenancyService } from "@bulwark/contracts";
import { envFor, freePort, spawnService, type ChildService } from "./support-e2e.js";

const keysMain = fileURLToPath(new URL("../../../services/keys/dist/src/main.js", import.meta.url));
const keysCli = fileURLToPath(new URL("../../../services/keys/dist/src/cli.js", import.meta.url));
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function runCli(env: Record<string, string>, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [keysCli, ...args], { env: { PATH: process.env["PATH"] ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  return new Promise((resolve) => proc.once("exit", (code) => resolve({ code, stdout, stderr })));
}

describe("master-key rotation re-wraps every stored key and everything still decrypts", () => {
  let tenancy: Started;
  let keys: Started;
  let child: ChildService | undefined;
  let mesh: KeysMesh;
  /** Every plaintext and secret value the test handled; none may appear in logs, events or errors. */
  const secrets = ["PLAINTEXT-tenant-card-4111", "PLAINTEXT-subject-address", "VAULT-VALUE-db-password-xyz", "PLAINTEXT-service-signing-key"];
  const sealed: { tenant: string; ciphertext: Uint8Array; purpose: string; plaintext: string }[] = [];
  let webhookSecret = "";
  let webhookId = "";
  let serviceCiphertext: Uint8Array = new Uint8Array();

  before(async () => {
    tenancy = await startTestService(tenancyModule);
    keys = await startTestService(keysModule, { prefix: tenancy.prefix, keep: true, env: { TENANCY_URL: tenancy.baseUrl, BULWARK_MASTER_KEYS: testMasterKeys.v1 } });
    mesh = { tenancy, keys, tenancyOps: clientFor(TenancyService, tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
  });
  after(async () => {
    await child?.kill();
    await keys?.stop().catch(() => undefined);
    if (keys !== undefined) await dropTestService(keys.config.DATABASE_SCHEMA, keys.prefix, "keys");
    await tenancy?.stop();
  });

  test("rewrap-master moves every key from v1 to v2 with a progress bar, and v2 alone decrypts everything", async () => {
    for (let i = 0; i < 3; i++) {
      const tenant = await newTenant(mesh);
      const k = keysClients(keys.baseUrl, keys.issueToken({ id: "usr_m", kind: "user", tenantId: tenant, permissions: new Set(allKeysPermissions) }));
      const a = await k.encryption.encrypt({ plaintext: bytes(secrets[0]!), purpose: "billing.card" });
      sealed.push({ tenant, ciphertext: a.ciphertext, purpose: "billing.card", plaintext: secrets[0]! });
      await k.encryption.rotateKey({});
      const b = await k.encryption.encrypt({ plaintext: bytes(secrets[1]!), purpose: "crm.address", subjectId: `usr_subject${i}` });
      sealed.push({ tenant, ciphertext: b.ciphertext, purpose: "crm.address", plaintext: secrets[1]! });
      await k.secrets.putSecret({ name: "db/password", value: bytes(secrets[2]!) });
      if (i === 0) {
        const w = await k.webhooks.createWebhookSecret({ name: "hook" });
        webhookSecret = w.secret;
        webhookId = w.webhookSecret!.id;
      }
    }
    const svc = keysClients(keys.baseUrl, keys.issueToken({ id: "svc_identity", kind: "service", permissions: new Set(["*"]) }));
    serviceCiphertext = (await svc.encryption.encrypt({ plaintext: bytes(secrets[3]!), purpose: "identity.signing_key", serviceRing: true })).ciphertext;
    await keys.stop();

    const before = await keysQuery<{ master_key_id: string; n: number }>(mesh, "select master_key_id, count(*)::int as n from $schema.key_versions group by master_key_id");
    assert.deepEqual(before.map((r) => r.master_key_id), ["v1"]);
    const total = before[0]!.n;
    assert.ok(total >= 10, `expected many stored keys, got ${total}`);

    const env = envFor(keys.config, { BULWARK_MASTER_KEYS: `${testMasterKeys.v2},${testMasterKeys.v1}` });
    const run = await runCli(env, ["rewrap-master"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /re-wrapping data keys/);
    assert.match(run.stderr, new RegExp(`${total}/${total}`));
    assert.match(run.stderr, new RegExp(`${total} data key version\\(s\\) now wrapped by master key "v2"`));
    const afterRows = await keysQuery<{ master_key_id: string }>(mesh, "select distinct master_key_id from $schema.key_versions");
    assert.deepEqual(afterRows.map((r) => r.master_key_id), ["v2"]);
    const again = await runCli(env, ["rewrap-master"]);
    assert.equal(again.code, 0);
    assert.match(again.stderr, /0 data key version\(s\)/);

    // Keys again, as its own process, with v2 alone.
    const port = await freePort();
    child = spawnService(envFor(keys.config, { LOG_LEVEL: "debug", PORT: String(port), TENANCY_URL: tenancy.baseUrl, BULWARK_MASTER_KEYS: testMasterKeys.v2 }), keysMain);
    await child.ready(port);
    const base = `http://127.0.0.1:${port}`;
    const errors: string[] = [];
    for (const s of sealed) {
      const k = keysClients(base, bootstrapToken, { "bulwark-tenant": s.tenant });
      const out = await k.encryption.decrypt({ ciphertext: s.ciphertext, purpose: s.purpose });
      assert.equal(Buffer.from(out.plaintext).toString(), s.plaintext);
      assert.equal(Buffer.from((await k.secrets.getSecret({ name: "db/password" })).value).toString(), secrets[2]);
      // Refusals, for the log: a wrong purpose, an unknown secret.
      for (const call of [() => k.encryption.decrypt({ ciphertext: s.ciphertext, purpose: "wrong" }), () => k.secrets.getSecret({ name: "nope" })]) {
        try {
          await call();
        } catch (err) {
          errors.push(ConnectError.from(err).rawMessage);
          assert.notEqual(ConnectError.from(err).code, Code.Internal);
        }
      }
    }
    const k0 = keysClients(base, bootstrapToken, { "bulwark-tenant": sealed[0]!.tenant });
    const signed = await k0.webhooks.signWebhook({ id: webhookId, messageId: "msg_after_rotation", payload: bytes("{}") });
    assert.ok(signed.webhookSignature.startsWith("v1,"));
    assert.ok(webhookSecret.startsWith("whsec_"));
    assert.equal(errors.length, sealed.length * 2);

    const log = child.output();
    assert.match(log, /"msg":"keys listening"/);
    const events = await keysEvents(mesh);
    for (const value of [...secrets, webhookSecret.slice(6), ...secrets.map((s) => Buffer.from(s).toString("base64"))]) {
      assert.ok(!log.includes(value), `the log carries ${value.slice(0, 12)}…`);
      for (const e of events) assert.ok(!e.bytes.includes(Buffer.from(value)), `an event carries ${value.slice(0, 12)}…`);
      for (const m of errors) assert.ok(!m.includes(value), "an error carries a secret");
    }
    for (const mk of [testMasterKeys.v1, testMasterKeys.v2]) assert.ok(!log.includes(mk.slice(3)), "the log carries a master key");
    assert.ok(serviceCiphertext.length > 0);
  });

  test("production refuses to start without a master key, naming the variable", async () => {
    const env = envFor(keys.config, { NODE_ENV: "production", BULWARK_SERVICE_KEY: "A".repeat(43), BULWARK_SERVICE_PUBLIC_KEYS: "", PORT: String(await freePort()) });
    const proc = spawnService(env, keysMain);
    const { code } = await proc.exited;
    assert.equal(code, 1);
    assert.match(proc.output(), /BULWARK_MASTER_KEYS: required in production/);
    const bad = spawnService({ ...env, BULWARK_MASTER_KEYS: "v1:short" }, keysMain);
    assert.equal((await bad.exited).code, 1);
    assert.match(bad.output(), /BULWARK_MASTER_KEYS/);
    assert.ok(!bad.output().includes("v1:short"));
  });
});
