/**
 * Identity tells an API key's owner what keys announced about it: a key
 * reported as found in public (revoked at once) and a key expiring within
 * seven days each send the owner one mail, with the key's name and public
 * id and never its secret. Real tenancy, identity and keys, a real SMTP
 * listener.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ApiKeyService, Environment } from "@bulwark/contracts";
import { parseApiKey } from "@bulwark/core";
import { clientFor, eventually } from "../support/harness.js";
import { apiKeysAs, keysEvents, keysTenant, keysUser, startKeysMesh, userPrincipal, type KeysMesh } from "./support-apikeys.js";
import { startMailbox, type Mailbox } from "./support-mail.js";

describe("identity's notices about API keys", () => {
  let mailbox: Mailbox;
  let mesh: KeysMesh;
  let tenantId: string;

  before(async () => {
    mailbox = await startMailbox();
    mesh = await startKeysMesh({ SMTP_URL: mailbox.url });
    tenantId = await keysTenant(mesh);
  });
  after(async () => {
    await mesh?.stop();
    await mailbox?.stop();
  });

  test("the owner of a key reported as exposed is mailed once where it was found, without its secret", async () => {
    const dev = await keysUser(mesh, tenantId, ["system:developer"]);
    const { key, token } = await apiKeysAs(mesh, userPrincipal(dev)).createApiKey({ name: "deploy bot", environment: Environment.LIVE, scopes: ["read"] });
    const report = { keys: [{ token, type: "bulwark_api_key", url: "https://github.com/acme/app/blob/main/.env", source: "content" }] };
    await clientFor(ApiKeyService, mesh.keys.baseUrl).reportExposedKeys(report);
    // Reported again (a scanner that retries): the key is already revoked, nobody is mailed twice.
    await clientFor(ApiKeyService, mesh.keys.baseUrl).reportExposedKeys(report);
    const [mail] = await mailbox.await(dev.email, "Your API key was found in public and revoked");
    assert.match(mail!.text, /deploy bot/);
    assert.ok(mail!.text.includes(key!.id));
    assert.ok(mail!.text.includes("https://github.com/acme/app/blob/main/.env"));
    assert.ok(!mail!.text.includes(parseApiKey(token)!.secret), "the mail never carries the secret");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(mailbox.to(dev.email, "Your API key was found in public and revoked").length, 1);
  });

  test("the owner of a key expiring within seven days is mailed once", async () => {
    const dev = await keysUser(mesh, tenantId, ["system:developer"]);
    const { key } = await apiKeysAs(mesh, userPrincipal(dev)).createApiKey({ name: "nightly export", environment: Environment.LIVE, scopes: ["read"], lifetime: { seconds: BigInt(2 * 86_400), nanos: 0 } });
    await eventually(async () => {
      await mesh.keys.running.scheduler.tick();
      return (await keysEvents(mesh)).some((e) => e.type === "key.expiring" && e.aggregateId === key!.id);
    }, 15_000, 100);
    const [mail] = await mailbox.await(dev.email, "Your API key expires soon");
    assert.match(mail!.text, /nightly export/);
    assert.ok(mail!.text.includes(key!.expireTime !== undefined ? new Date(Number(key!.expireTime.seconds) * 1000).toISOString().slice(0, 16) : "?"));
    assert.equal(mailbox.to(dev.email, "Your API key expires soon").length, 1);
  });
});
