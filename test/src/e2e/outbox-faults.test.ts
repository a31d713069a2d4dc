/**
 * Events: nothing lost, nothing twice, under faults. A change that rolls
 * back publishes nothing; a service killed with SIGKILL while outbox rows
 * are unsent (or published but not yet marked sent) loses no event after it
 * restarts, and no event is handled twice.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Region, TenancyService, TenantCreatedSchema, type TenantCreated } from "@bulwark/contracts";
import { loadConfig, MeshKeys, newId, runInTenant, type ServiceConfig } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { EventPublisher, OutboxRelay } from "@bulwark/events";
import { migrateService, streamOf } from "@bulwark/server";
import { SecurityPolicyEntity, TenantEntity, tenancyModule } from "@bulwark/tenancy";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nuid";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { adminQuery, adminUrl, bootstrapToken, clientFor, dropTestService, eventually, natsUrl, serviceSecret, startTestService, testDatabase, uniqueSlug, type Started } from "../support/harness.js";
import { collectEvents, envFor, expectCode, freePort, quietLogger, sleep, spawnService, type ChildService, type Collector } from "./support-e2e.js";

/** Messages in a stream per subject. */
async function streamCount(nc: NatsConnection, stream: string, subject: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function outboxCount(schema: string, where = "true"): Promise<number> {
  const rows = await adminQuery<{ n: string }>(`select count(*)::text as n from "${schema}".outbox where ${where}`);
  return Number(rows[0]!.n);
}

describe("outbox: a rolled-back change publishes nothing", () => {
  let svc: Started | undefined;
  let events: Collector | undefined;

  before(async () => {
    svc = await startTestService(tenancyModule);
    const { db, nc, js } = svc.running.deps;
    events = await collectEvents({ db, nc, js, stream: streamOf(svc.prefix, "tenancy").name, source: "tenancy", subjectPrefix: svc.prefix, durable: "e2e_rollback", filterSubjects: [`${svc.prefix}.tenancy.tenant.created`] });
  });

  after(async () => {
    await events?.stop().catch(() => undefined);
    await svc?.stop();
  });

  test("CreateTenant with a taken slug fails with ALREADY_EXISTS and its event never appears", async () => {
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    const slug = uniqueSlug("dup");
    const first = (await ops.createTenant({ slug, displayName: "First", region: Region.EU })).tenant!.id;
    const err = await expectCode(ops.createTenant({ slug, displayName: "Second", region: Region.US }), Code.AlreadyExists);
    assert.doesNotMatch(err.rawMessage, /insert|constraint|tenants_slug_unique/i);
    // A later successful change: once its event is handled, an event of the
    // failed create (written earlier, so relayed earlier) would have been too.
    const later = (await ops.createTenant({ slug: uniqueSlug("later"), displayName: "Later", region: Region.EU })).tenant!.id;
    await eventually(() => events!.of("created", later).length === 1, 5000);

    const withSlug = events!.handled.filter((h) => (h.payload as TenantCreated | undefined)?.tenant?.slug === slug);
    assert.equal(withSlug.length, 1, "exactly one tenant.created for the slug");
    assert.equal(withSlug[0]!.envelope.aggregateId, first);
    assert.equal(events!.handled.length, 2);
    assert.equal(await outboxCount(svc!.config.DATABASE_SCHEMA, "subject like '%.tenant.created'"), 2, "the outbox holds no row for the failed create");
    assert.equal(await streamCount(svc!.running.deps.nc, streamOf(svc!.prefix, "tenancy").name, `${svc!.prefix}.tenancy.tenant.created`), 2);
    // And the failed create left no tenant behind.
    const resolved = await clientFor(TenancyService, svc!.baseUrl).resolveTenant({ slug });
    assert.equal(resolved.tenantId, first);
  });
});

describe("outbox: a crash between commit, publish and mark loses nothing and duplicates nothing", () => {
  const id = nuid.next().toLowerCase();
  const schema = `t_tenancy_${id}`;
  const prefix = `t${id}`;
  const stream = streamOf(prefix, "tenancy").name;
  const createdSubject = `${prefix}.tenancy.tenant.created`;
  let config: ServiceConfig;
  let child: ChildService | undefined;
  let db: Database | undefined;
  let nc: NatsConnection | undefined;
  let events: Collector | undefined;
  const relays: OutboxRelay[] = [];

  before(async () => {
    const app = new URL(adminUrl);
    app.username = `${schema}_app`;
    app.pathname = `/${testDatabase}`;
    const admin = new URL(adminUrl);
    admin.pathname = `/${testDatabase}`;
    config = loadConfig("tenancy", {
      NODE_ENV: "test",
      PORT: "0",
      DATABASE_URL: app.toString(),
      DATABASE_ADMIN_URL: admin.toString(),
      DATABASE_SCHEMA: schema,
      DATABASE_POOL_MAX: "4",
      NATS_URL: natsUrl,
      EVENTS_SUBJECT_PREFIX: prefix,
      BULWARK_BOOTSTRAP_TOKEN: bootstrapToken,
      BULWARK_SERVICE_SECRET: serviceSecret,
      SHUTDOWN_GRACE_MS: "2000",
    });
    await migrateService(tenancyModule, config);
    db = await Database.open({ clientUrl: config.DATABASE_URL, schema, entities: [TenantEntity, SecurityPolicyEntity], poolMax: 2 });
    nc = await connect({ servers: natsUrl });
  });

  after(async () => {
    for (const r of relays) await r.stop().catch(() => undefined);
    await child?.kill();
    await events?.stop().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await db?.close().catch(() => undefined);
    await dropTestService(schema, prefix, "tenancy");
  });

  async function startChild(): Promise<string> {
    const port = await freePort();
    child = spawnService(envFor(config, { PORT: String(port), LOG_LEVEL: "warn" }));
    await child.ready(port);
    return `http://127.0.0.1:${port}`;
  }

  test("SIGKILL right after the last create, and a crash between publish and mark, lose and duplicate nothing", async (t) => {
    let baseUrl = await startChild();
    events = await collectEvents({ db: db!, nc: nc!, js: jetstream(nc!), stream, source: "tenancy", subjectPrefix: prefix, durable: "e2e_crash", filterSubjects: [createdSubject] });

    // N creates in parallel; SIGKILL the process when a third of them have returned,
    // so commits, publishes and marks are all in progress.
    const n = 60;
    const ops = clientFor(TenancyService, baseUrl, bootstrapToken);
    let returned = 0;
    const answered = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        ops.createTenant({ slug: uniqueSlug(`crash${i}`), displayName: `Crash ${i}`, region: Region.EU }).then(
          (r) => {
            if (++returned === n / 3) child!.proc.kill("SIGKILL");
            return r.tenant!.id;
          },
          () => undefined,
        ),
      ),
    );
    const exit = await child!.exited;
    assert.equal(exit.signal, "SIGKILL");
    // Whatever committed must be published: the tenants that exist, not just those whose answer arrived.
    const tenantIds = (await adminQuery<{ id: string }>(`select id from "${schema}".tenants`)).map((r) => r.id);
    for (const ok of answered) if (ok !== undefined) assert.ok(tenantIds.includes(ok), "an acknowledged create is durable");
    const unsentAfterKill = await outboxCount(schema, "sent_at is null");
    assert.equal(await outboxCount(schema, "subject like '%.tenant.created'"), tenantIds.length, "every committed create has its outbox row");
    t.diagnostic(`created before SIGKILL: ${tenantIds.length}/${n} (${answered.filter((a) => a !== undefined).length} acknowledged); unsent after SIGKILL: ${unsentAfterKill}`);

    // Force the exact window: a relay publishes a batch and dies before marking it sent.
    // Extra rows make sure the batch is never empty (the kill may have left none unsent).
    const publisher = new EventPublisher({ service: "tenancy", subjectPrefix: prefix, keys: MeshKeys.development("tenancy") });
    const extraIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const tid = newId("ten");
      const env = await runInTenant(tid, () =>
        db!.transaction((em) => publisher.publish(em, { aggregate: "tenant", verb: "created", aggregateId: tid, schema: TenantCreatedSchema, payload: create(TenantCreatedSchema, { tenant: { id: tid, tenantId: tid } as never }) })),
      );
      extraIds.push(env.aggregateId);
    }
    let window = 0;
    const crashing = new OutboxRelay({
      db: db!,
      js: jetstream(nc!),
      logger: quietLogger,
      afterPublishBeforeMark: () => {
        window++;
        throw new Error("simulated crash between publish and mark");
      },
    });
    relays.push(crashing);
    await assert.rejects(crashing.relayBatch(), /simulated crash/);
    assert.equal(window, 1);
    const unsentBeforeRestart = await outboxCount(schema, "sent_at is null");
    assert.equal(unsentBeforeRestart, unsentAfterKill + 5, "the batch was published but stays unsent");
    assert.equal(await streamCount(nc!, stream, createdSubject), tenantIds.length + 5, "…and every one of its events is already in the stream");

    // Restart: the new process republishes everything unsent; JetStream drops the duplicates.
    baseUrl = await startChild();
    await eventually(async () => (await outboxCount(schema, "sent_at is null")) === 0, 10_000);
    const all = [...tenantIds, ...extraIds];
    await eventually(() => all.every((t) => events!.of("created", t).length > 0), 10_000);
    await sleep(700); // longer than a relay poll: any duplicate would have arrived
    for (const t of all) assert.equal(events!.of("created", t).length, 1, `tenant.created for ${t} handled exactly once`);
    assert.equal(events!.handled.length, all.length);
    assert.equal(await streamCount(nc!, stream, createdSubject), all.length, "no event is in the stream twice");
    assert.deepEqual(events!.duplicates, [], "no redelivery even reached the inbox check");
    // The restarted service works.
    assert.equal((await clientFor(TenancyService, baseUrl, bootstrapToken).getTenant({ tenantId: tenantIds[0]! })).tenant?.id, tenantIds[0]);
  });
});
