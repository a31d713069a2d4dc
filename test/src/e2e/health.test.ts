/**
 * Health and failure behaviour with real dependencies taken away: a TCP
 * proxy sits between the service and Postgres (and another in front of
 * NATS), so one service loses its dependency while the shared Postgres and
 * NATS keep serving every other test.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { health, Region, TenancyService } from "@bulwark/contracts";
import { streamOf } from "@bulwark/server";
import { tenancyModule } from "@bulwark/tenancy";
import { jetstreamManager } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nuid";
import { connect } from "@nats-io/transport-node";
import { adminQuery, adminUrl, bootstrapToken, clientFor, eventually, natsUrl, startTestService, testDatabase, uniqueSlug, type Started } from "../support/harness.js";
import { expectCode, TcpProxy } from "./support-e2e.js";

const { HealthCheckResponse_ServingStatus: Status } = health;

/** Asserts a failed call's error is a clean UNAVAILABLE/INTERNAL with no SQL or stack in it. */
function assertCleanDependencyError(err: unknown): void {
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
  assert.ok(err.code === Code.Unavailable || err.code === Code.Internal, `expected UNAVAILABLE or INTERNAL, got ${Code[err.code]}: ${err.rawMessage}`);
  assert.doesNotMatch(err.rawMessage, /\b(select|insert|update|delete)\b|\bfrom\b.*\bwhere\b/i, `SQL leaked: ${err.rawMessage}`);
  assert.doesNotMatch(err.rawMessage, /\n\s*at |\bat .+:\d+:\d+|node_modules|\.js:\d+/, `stack leaked: ${err.rawMessage}`);
  assert.doesNotMatch(err.rawMessage, /127\.0\.0\.1|ECONNREFUSED|postgres:\/\/|_app\b/, `connection details leaked: ${err.rawMessage}`);
  for (const [k, v] of err.metadata) assert.doesNotMatch(`${k}: ${v}`, /\bselect\b|\n\s*at /i, `leak in trailer ${k}`);
}

describe("health and dependency failures", () => {
  const id = nuid.next().toLowerCase();
  const schema = `t_tenancy_${id}`;
  const prefix = `t${id}`;
  const pgTarget = new URL(adminUrl);
  const natsTarget = new URL(natsUrl);
  const pgProxy = new TcpProxy(pgTarget.hostname, Number(pgTarget.port || 5432));
  const natsProxy = new TcpProxy(natsTarget.hostname, Number(natsTarget.port || 4222));
  let svc: Started | undefined;
  const watchAbort = new AbortController();
  const watched: number[] = [];
  let watching: Promise<void> | undefined;

  before(async () => {
    await pgProxy.start();
    await natsProxy.start();
    const db = new URL(adminUrl);
    db.username = `${schema}_app`;
    db.password = "";
    db.port = String(pgProxy.port);
    db.pathname = `/${testDatabase}`;
    svc = await startTestService(tenancyModule, { reuse: { schema, prefix }, env: { DATABASE_URL: db.toString(), NATS_URL: `nats://127.0.0.1:${natsProxy.port}` } });
    const healthClient = clientFor(health.Health, svc.baseUrl);
    watching = (async () => {
      try {
        for await (const res of healthClient.watch({ service: "" }, { signal: watchAbort.signal })) watched.push(res.status);
      } catch (err) {
        if (!watchAbort.signal.aborted) throw err;
      }
    })();
  });

  after(async () => {
    watchAbort.abort();
    await watching?.catch(() => undefined);
    await pgProxy.start().catch(() => undefined);
    await natsProxy.start().catch(() => undefined);
    await svc?.stop();
    await pgProxy.stop();
    await natsProxy.stop();
  });

  async function status(service = ""): Promise<number> {
    return (await clientFor(health.Health, svc!.baseUrl).check({ service })).status;
  }

  async function becomes(expected: number, withinMs: number): Promise<number> {
    const t0 = Date.now();
    await eventually(async () => (await status()) === expected, withinMs, 100);
    return Date.now() - t0;
  }

  test("invalid input gets INVALID_ARGUMENT naming the field", async () => {
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    const existing = (await ops.createTenant({ slug: uniqueSlug("inv"), displayName: "Inv", region: Region.EU })).tenant!.id;
    // Each call starts when its turn comes: a rejection nobody awaits yet would count as unhandled.
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => ops.createTenant({ slug: "Not A Slug!", displayName: "x", region: Region.EU }), /slug/],
      [() => ops.createTenant({ slug: uniqueSlug(), displayName: "", region: Region.EU }), /display_name/],
      [() => ops.createTenant({ slug: uniqueSlug(), displayName: "x" }), /region/],
      [() => ops.getTenant({ tenantId: "" }), /tenant_id/],
      [() => ops.updateTenant({ tenantId: existing, updateMask: create(FieldMaskSchema, { paths: ["slug"] }) }), /update_mask/],
      [() => ops.updateTenant({ tenantId: existing, displayName: "", updateMask: create(FieldMaskSchema, { paths: ["display_name"] }) }), /display_name/],
    ];
    for (const [call, field] of cases) {
      const err = await call().then(
        () => assert.fail("expected INVALID_ARGUMENT"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.InvalidArgument, `${Code[err.code]}: ${err.rawMessage}`);
      assert.match(err.rawMessage, field);
      assert.doesNotMatch(err.rawMessage, /\n\s*at /);
    }
    // The Connect protocol (HTTP/1.1 JSON) says the same.
    const viaConnect = await expectCode(clientFor(TenancyService, svc!.baseUrl, bootstrapToken, "connect").getTenant({ tenantId: "" }), Code.InvalidArgument);
    assert.match(viaConnect.rawMessage, /tenant_id/);
  });

  test("Postgres unreachable: NOT_SERVING, clean UNAVAILABLE errors, then SERVING and working again", async (t) => {
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    const tenant = (await ops.createTenant({ slug: uniqueSlug("pg"), displayName: "PG", region: Region.EU })).tenant!.id;
    assert.equal(await status(), Status.SERVING);
    assert.equal(await status(TenancyService.typeName), Status.SERVING);

    // A call in flight when Postgres goes away, then calls while it is away.
    const inFlight = ops.createTenant({ slug: uniqueSlug("mid"), displayName: "Mid", region: Region.EU }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await pgProxy.stop();
    const midErr = await inFlight;
    if (midErr !== undefined) assertCleanDependencyError(midErr);
    const down = await becomes(Status.NOT_SERVING, 5000);
    t.diagnostic(`NOT_SERVING ${down} ms after Postgres went away`);
    assert.equal(await status(TenancyService.typeName), Status.NOT_SERVING);
    for (const call of [ops.getTenant({ tenantId: tenant }), ops.createTenant({ slug: uniqueSlug("down"), displayName: "Down", region: Region.EU })]) {
      const err = await call.then(
        () => assert.fail("a call succeeded while Postgres was unreachable"),
        (e: unknown) => ConnectError.from(e),
      );
      assertCleanDependencyError(err);
    }

    await pgProxy.start();
    const up = await becomes(Status.SERVING, 5000);
    t.diagnostic(`SERVING ${up} ms after Postgres came back`);
    await eventually(async () => (await ops.getTenant({ tenantId: tenant }).then(() => true, () => false)), 3000);
    assert.equal((await ops.getTenant({ tenantId: tenant })).tenant?.id, tenant);
    assert.ok((await ops.createTenant({ slug: uniqueSlug("after"), displayName: "After", region: Region.EU })).tenant?.id);
  });

  test("NATS unreachable: NOT_SERVING, writes still commit, their events go out when NATS is back", async (t) => {
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken);
    assert.equal(await status(), Status.SERVING);
    await natsProxy.stop();
    const down = await becomes(Status.NOT_SERVING, 5000);
    t.diagnostic(`NOT_SERVING ${down} ms after NATS went away`);

    // The outbox decouples the write from NATS.
    const during = (await ops.createTenant({ slug: uniqueSlug("nats"), displayName: "During outage", region: Region.EU })).tenant!.id;
    const unsent = await adminQuery<{ n: string }>(`select count(*)::text as n from "${schema}".outbox where sent_at is null and tenant_id = $1`, [during]);
    assert.equal(unsent[0]!.n, "1", "the event waits in the outbox");

    await natsProxy.start();
    const up = await becomes(Status.SERVING, 8000);
    t.diagnostic(`SERVING ${up} ms after NATS came back`);
    await eventually(async () => {
      const rows = await adminQuery<{ n: string }>(`select count(*)::text as n from "${schema}".outbox where sent_at is null`);
      return rows[0]!.n === "0";
    }, 10_000);
    const nc = await connect({ servers: natsUrl });
    try {
      const jsm = await jetstreamManager(nc);
      const subject = `${prefix}.tenancy.tenant.created`;
      const msg = await jsm.streams.getMessage(streamOf(prefix, "tenancy").name, { last_by_subj: subject });
      assert.equal(msg?.header?.get("bulwark-tenant"), during, "the event written during the outage reached the stream");
    } finally {
      await nc.close();
    }
  });

  test("a Watch stream observed every transition", async () => {
    await eventually(() => watched.at(-1) === Status.SERVING, 2000);
    const transitions = watched.filter((s, i) => i === 0 || watched[i - 1] !== s);
    assert.deepEqual(
      transitions.map((s) => Status[s]),
      ["SERVING", "NOT_SERVING", "SERVING", "NOT_SERVING", "SERVING"],
    );
  });
});
