/**
 * The event bus is a trust boundary. Against a nats-server configured with
 * the mesh's own authorization block (`natsAuthorizationConfig`, what the
 * README and the Helm chart document), each service runs with its own
 * credentials, and a holder of one service's credentials cannot publish
 * another service's events, write the tenant-status bucket, or delete or
 * purge any stream. The services still work end to end with these
 * permissions: a suspension travels from tenancy to identity's gate, and
 * audit's trail consumer reads compliance's stream.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Region, TenancyService, UserService } from "@bulwark/contracts";
import { natsAuthorizationConfig, streamNameOf, tenantStatusBucket } from "@bulwark/events";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { nuid } from "@nats-io/nuid";
import { bootstrapToken, clientFor, eventually, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { codeOf, freePort, portOpen } from "./support-e2e.js";

const natsBinary = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].find((p) => existsSync(p));

describe("NATS permissions per service", { skip: natsBinary === undefined ? "no nats-server binary on this machine" : false }, () => {
  const prefix = `t${nuid.next().toLowerCase()}`;
  const passwords = { tenancy: nuid.next(), identity: nuid.next(), audit: nuid.next(), compliance: nuid.next(), admin: nuid.next() };
  let dir = "";
  let server: ChildProcess | undefined;
  let url = "";
  let tenancy: Started | undefined;
  let identity: Started | undefined;
  let admin: NatsConnection | undefined;
  let asIdentity: NatsConnection | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "bulwark-nats-"));
    const port = await freePort();
    const config = `listen: "127.0.0.1:${port}"\njetstream { store_dir: ${JSON.stringify(join(dir, "js"))} }\n${natsAuthorizationConfig(
      prefix,
      [
        { service: "tenancy", password: passwords.tenancy },
        { service: "identity", password: passwords.identity },
        { service: "audit", password: passwords.audit },
        { service: "compliance", password: passwords.compliance },
      ],
      [{ user: "admin", password: passwords.admin }],
    )}`;
    writeFileSync(join(dir, "nats.conf"), config);
    server = spawn(natsBinary!, ["-c", join(dir, "nats.conf")], { stdio: "ignore" });
    await eventually(() => portOpen(port), 10_000, 50);
    url = `nats://127.0.0.1:${port}`;
    admin = await connect({ servers: url, user: "admin", pass: passwords.admin });
    tenancy = await startTestService(tenancyModule, { prefix, env: { NATS_URL: url, NATS_USER: "tenancy", NATS_PASSWORD: passwords.tenancy } });
    identity = await startTestService(identityModule, { prefix, env: { NATS_URL: url, NATS_USER: "identity", NATS_PASSWORD: passwords.identity, TENANCY_URL: tenancy.baseUrl } });
    asIdentity = await connect({ servers: url, user: "identity", pass: passwords.identity });
  });

  after(async () => {
    await asIdentity?.close().catch(() => undefined);
    await identity?.stop().catch(() => undefined);
    await tenancy?.stop().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    server?.kill("SIGTERM");
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  test("the services work with their own credentials: a suspension reaches identity's gate", async () => {
    const ops = clientFor(TenancyService, tenancy!.baseUrl, bootstrapToken);
    const tenantId = (await ops.createTenant({ slug: uniqueSlug("nats"), displayName: "Nats Co", region: Region.EU })).tenant!.id;
    const user = clientFor(UserService, identity!.baseUrl, identity!.issueToken({ id: "usr_nats", kind: "user", tenantId, permissions: new Set(["identity.users.list"]) }));
    assert.equal(await codeOf(user.listUsers({})), "OK");
    await ops.suspendTenant({ tenantId, reason: "nats permissions test" });
    await eventually(async () => (await codeOf(user.listUsers({}))) === "PermissionDenied", 5_000, 50);
  });

  test("identity's credentials cannot publish tenancy's events", async () => {
    const seen: string[] = [];
    const sub = admin!.subscribe(`${prefix}.tenancy.>`, { callback: (_err, msg) => {
        seen.push(msg.subject);
      },
    });
    await admin!.flush();
    asIdentity!.publish(`${prefix}.tenancy.tenant.reactivated`, new Uint8Array([1, 2, 3]));
    await assert.rejects(jetstream(asIdentity!).publish(`${prefix}.tenancy.tenant.reactivated`, new Uint8Array([1]), { timeout: 1_000 }));
    await asIdentity!.flush().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    sub.unsubscribe();
    assert.deepEqual(seen, []);
  });

  test("identity's credentials cannot write, delete or purge the tenant-status bucket", async () => {
    const bucket = tenantStatusBucket(prefix);
    const before = (await (await new Kvm(admin!).open(bucket)).status()).values;
    const kv = await new Kvm(asIdentity!).open(bucket);
    await assert.rejects(kv.put("ten_forged", "suspended"));
    await assert.rejects(kv.delete("ten_forged"));
    await assert.rejects((await jetstreamManager(asIdentity!)).streams.purge(`KV_${bucket}`));
    assert.equal((await (await new Kvm(admin!).open(bucket)).status()).values, before);
  });

  test("audit's credentials consume compliance's stream (as its trail does) but cannot publish on it", async () => {
    const asCompliance = await connect({ servers: url, user: "compliance", pass: passwords.compliance });
    const asAudit = await connect({ servers: url, user: "audit", pass: passwords.audit });
    try {
      const stream = streamNameOf(prefix, "compliance");
      await (await jetstreamManager(asCompliance)).streams.add({ name: stream, subjects: [`${prefix}.compliance.>`] });
      // A subject only audit's trail reads (identity's retention-rule copy follows legal_hold.* and would meet a message that is no envelope).
      await jetstream(asCompliance).publish(`${prefix}.compliance.request.received`, new Uint8Array([7]), { msgID: nuid.next() });
      await (await jetstreamManager(asAudit)).consumers.add(stream, { durable_name: "audit-trail-compliance", ack_policy: AckPolicy.Explicit, filter_subject: `${prefix}.compliance.>` });
      const consumer = await jetstream(asAudit).consumers.get(stream, "audit-trail-compliance");
      const msg = await consumer.next({ expires: 5_000 });
      assert.equal(msg?.subject, `${prefix}.compliance.request.received`);
      await msg!.ackAck();
      await assert.rejects(jetstream(asAudit).publish(`${prefix}.compliance.legal_hold.deleted`, new Uint8Array([1]), { timeout: 1_000 }));
    } finally {
      await asAudit.close();
      await asCompliance.close();
    }
  });

  test("no service may delete, purge or rewrite another's stream, nor its own", async () => {
    const jsm = await jetstreamManager(asIdentity!);
    const tenancyStream = streamNameOf(prefix, "tenancy");
    await assert.rejects(jsm.streams.delete(tenancyStream));
    await assert.rejects(jsm.streams.purge(tenancyStream));
    await assert.rejects(jsm.streams.deleteMessage(tenancyStream, 1));
    await assert.rejects(jsm.streams.update(tenancyStream, { subjects: [`${prefix}.tenancy.>`, `${prefix}.stolen.>`] }));
    await assert.rejects(jsm.streams.delete(streamNameOf(prefix, "identity")));
    assert.ok(await (await jetstreamManager(admin!)).streams.info(tenancyStream));
  });
});
