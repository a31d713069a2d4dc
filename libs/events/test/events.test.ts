import * as assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { currentContext, MeshKeys, runAsPlatform, runInTenant, runWithContext } from "@bulwark/core";
import { TenantCreatedSchema, type TenantCreated } from "@bulwark/contracts";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { context, propagation, trace, TraceFlags } from "@opentelemetry/api";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureStream, EventConsumer, OutboxRelay, scopeToEvent, type ConsumedEvent, type EventHandler } from "../src/index.js";
import { quietLogger, setUp, sleep, waitFor, type Harness } from "./support/harness.js";

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

let h: Harness;
const consumers: EventConsumer[] = [];
const relays: OutboxRelay[] = [];

function tenantCreated(id: string): TenantCreated {
  return create(TenantCreatedSchema, { tenant: { id } });
}

/** Writes `n` events of one aggregate in tenant `tenant`, each in its own committed transaction. */
async function writeEvents(aggregate: string, n: number, tenant = "ten_a"): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const env = await runInTenant(tenant, () =>
      h.db.transaction((em) => h.publisher.publish(em, { aggregate, verb: "created", aggregateId: `${tenant}_${i}`, schema: TenantCreatedSchema, payload: tenantCreated(`${tenant}_${i}`) })),
    );
    ids.push(env.id);
  }
  return ids;
}

async function startConsumer(aggregate: string, handle: EventHandler, extra: Partial<ConstructorParameters<typeof EventConsumer>[0]> = {}): Promise<EventConsumer> {
  const consumer = new EventConsumer({
    db: h.db,
    nc: h.nc,
    js: h.js,
    stream: h.stream,
    source: "test",
    keys: MeshKeys.development("consumer"),
    subjectPrefix: h.prefix,
    durable: `c_${aggregate}`,
    filterSubjects: [`${h.prefix}.test.${aggregate}.*`],
    handle,
    backoffMs: [50, 100],
    logger: quietLogger,
    ...extra,
  });
  consumers.push(consumer);
  await consumer.start();
  return consumer;
}

function newRelay(extra: Partial<ConstructorParameters<typeof OutboxRelay>[0]> = {}): OutboxRelay {
  const relay = new OutboxRelay({ db: h.db, js: h.js, pollIntervalMs: 50, batchSize: 10, logger: quietLogger, ...extra });
  relays.push(relay);
  return relay;
}

async function unsentCount(): Promise<number> {
  const rows = await h.adminQuery<{ n: string }>(`select count(*) as n from outbox where sent_at is null`.replace("outbox", `"${h.db.schema}".outbox`));
  return Number(rows[0]?.n);
}

describe("transactional outbox, relay and consumers", () => {
  before(async () => {
    h = await setUp("events");
  });

  after(async () => {
    for (const relay of relays) await relay.stop();
    for (const consumer of consumers) await consumer.stop();
    await h?.teardown();
  });

  test("an event written in a transaction that rolls back is never published", async () => {
    const seen: string[] = [];
    await startConsumer("rollback", async (event) => {
      seen.push(event.envelope.aggregateId);
    });
    await assert.rejects(
      runInTenant("ten_a", () =>
        h.db.transaction(async (em) => {
          await h.publisher.publish(em, { aggregate: "rollback", verb: "created", aggregateId: "rolled_back", schema: TenantCreatedSchema, payload: tenantCreated("x") });
          throw new Error("business rule failed");
        }),
      ),
      /business rule failed/,
    );
    assert.equal(await unsentCount(), 0);
    await runInTenant("ten_a", () =>
      h.db.transaction((em) => h.publisher.publish(em, { aggregate: "rollback", verb: "created", aggregateId: "committed", schema: TenantCreatedSchema, payload: tenantCreated("y") })),
    );
    const relay = newRelay();
    assert.equal(await relay.relayBatch(), 1);
    await waitFor(() => seen.length === 1, 5_000, "the committed event");
    await sleep(200);
    assert.deepEqual(seen, ["committed"]);
  });

  test("a committed event reaches a consumer with tenant, principal, request and trace context restored", async () => {
    let received: { event: ConsumedEvent; tenantId: string | undefined; principal: string | undefined; requestId: string | undefined; traceparent: string | undefined } | undefined;
    await startConsumer("ctx", async (event) => {
      const carrier: Record<string, string> = {};
      propagation.inject(context.active(), carrier);
      const ctx = currentContext();
      received = { event, tenantId: ctx?.tenantId, principal: ctx?.principal?.id, requestId: ctx?.requestId, traceparent: carrier["traceparent"] };
    });
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const spanContext = { traceId, spanId: "b7ad6b7169203331", traceFlags: TraceFlags.SAMPLED, isRemote: true };
    const principal = { id: "usr_alice", kind: "user" as const, tenantId: "ten_ctx", permissions: new Set(["*"]) };
    const relay = newRelay();
    relay.start();
    const envelope = await context.with(trace.setSpanContext(context.active(), spanContext), () =>
      runWithContext({ requestId: "req_ctx_1", tenantId: "ten_ctx", principal }, () =>
        h.db.transaction((em) => h.publisher.publish(em, { aggregate: "ctx", verb: "created", aggregateId: "ten_ctx", schema: TenantCreatedSchema, payload: tenantCreated("ten_ctx") })),
      ),
    );
    relay.nudge();
    await waitFor(() => received !== undefined, 5_000, "the event");
    assert.equal(received?.tenantId, "ten_ctx");
    assert.equal(received?.principal, "usr_alice");
    assert.equal(received?.requestId, "req_ctx_1");
    assert.match(received?.traceparent ?? "", new RegExp(`^00-${traceId}-`));
    assert.equal(received?.event.envelope.id, envelope.id);
    assert.equal(received?.event.subject, `${h.prefix}.test.ctx.created`);
    assert.equal(received?.event.headers["bulwark-tenant"], "ten_ctx");
    assert.equal(received?.event.headers["Nats-Msg-Id"], envelope.id);
    assert.equal((received?.event.payload as TenantCreated | undefined)?.tenant?.id, "ten_ctx");
    await relay.stop();
  });

  test("the events of one transaction keep the order they were written in, in the outbox the relay reads by (created_at, id)", async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `ten_order_${String(i).padStart(2, "0")}`);
    const envelopes = await runInTenant("ten_order", () =>
      h.db.transaction(async (em) => {
        const out: string[] = [];
        for (const id of ids) out.push((await h.publisher.publish(em, { aggregate: "ordered", verb: "created", aggregateId: id, schema: TenantCreatedSchema, payload: tenantCreated(id) })).id);
        return out;
      }),
    );
    try {
      const rows = await h.adminQuery<{ id: string }>(`select id from "${h.db.schema}".outbox where id = any($1) order by created_at, id`, [envelopes]);
      assert.deepEqual(rows.map((r) => r.id), envelopes);
    } finally {
      // Never relayed: the tests after this one count the outbox.
      await h.adminQuery(`delete from "${h.db.schema}".outbox where id = any($1)`, [envelopes]);
    }
  });

  test("a relay that crashes between publish and mark-sent loses nothing and duplicates nothing", async () => {
    const handled = new Map<string, number>();
    let duplicates = 0;
    await startConsumer(
      "crash",
      async (event) => {
        handled.set(event.envelope.id, (handled.get(event.envelope.id) ?? 0) + 1);
      },
      { onDuplicate: () => duplicates++ },
    );
    const ids = await writeEvents("crash", 5);
    const crashing = newRelay({
      afterPublishBeforeMark: () => {
        throw new Error("simulated crash");
      },
    });
    await assert.rejects(crashing.relayBatch(), /simulated crash/);
    assert.equal(await unsentCount(), 5);
    const restarted = newRelay();
    assert.equal(await restarted.relayBatch(), 5);
    assert.equal(await unsentCount(), 0);
    await waitFor(() => ids.every((id) => handled.has(id)), 5_000, "every event");
    await sleep(300);
    assert.deepEqual([...handled.values()], [1, 1, 1, 1, 1]);
    assert.equal(duplicates, 0, "JetStream dropped the republished copies by Nats-Msg-Id");
  });

  test("two relays running concurrently publish each event once", async () => {
    const handled = new Map<string, number>();
    let duplicates = 0;
    await startConsumer(
      "concurrent",
      async (event) => {
        handled.set(event.envelope.id, (handled.get(event.envelope.id) ?? 0) + 1);
      },
      { onDuplicate: () => duplicates++ },
    );
    const ids = await writeEvents("concurrent", 40);
    const publishedBy: string[][] = [[], []];
    const slow = async (): Promise<void> => sleep(20);
    const a = newRelay({ batchSize: 5, afterPublishBeforeMark: slow, onPublished: (batch) => publishedBy[0]!.push(...batch) });
    const b = newRelay({ batchSize: 5, afterPublishBeforeMark: slow, onPublished: (batch) => publishedBy[1]!.push(...batch) });
    a.start();
    b.start();
    await waitFor(() => ids.every((id) => handled.has(id)), 10_000, "every event");
    await Promise.all([a.stop(), b.stop()]);
    await sleep(300);
    assert.equal(handled.size, 40);
    assert.ok([...handled.values()].every((n) => n === 1));
    assert.equal(duplicates, 0);
    assert.equal(publishedBy[0]!.length + publishedBy[1]!.length, 40);
    assert.ok(publishedBy[0]!.length > 0 && publishedBy[1]!.length > 0, "both relays shared the work");
    assert.equal(new Set([...publishedBy[0]!, ...publishedBy[1]!]).size, 40);
  });

  test("a handler that always fails gets its message parked after maxDeliver tries, and later messages still flow", async () => {
    let attempts = 0;
    const good: string[] = [];
    const parked: string[] = [];
    await startConsumer(
      "poison",
      async (event) => {
        if (event.envelope.aggregateId === "ten_a_0") {
          attempts++;
          throw new Error("cannot handle this tenant\n    at secret stack frame");
        }
        good.push(event.envelope.aggregateId);
      },
      { maxDeliver: 3, onParked: (id) => parked.push(id) },
    );
    const [poisonId] = await writeEvents("poison", 2);
    await newRelay().relayBatch();
    await waitFor(() => parked.length === 1 && good.length === 1, 10_000, "parking and the good event");
    assert.equal(attempts, 3);
    assert.deepEqual(good, ["ten_a_1"]);
    const rows = await h.adminQuery<{ event_id: string; deliveries: number; error: string; tenant_id: string }>(
      `select event_id, deliveries, error, tenant_id from "${h.db.schema}".parked_events where consumer = 'c_poison'`,
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.event_id, poisonId);
    assert.equal(rows[0]?.deliveries, 3);
    assert.equal(rows[0]?.tenant_id, "ten_a");
    assert.equal(rows[0]?.error, "Error: cannot handle this tenant");
    const inbox = await h.adminQuery(`select 1 from "${h.db.schema}".inbox where consumer = 'c_poison' and event_id = $1`, [poisonId]);
    assert.equal(inbox.length, 0, "the failed handling left no inbox record");
  });

  test("a redelivered event id that was already handled is skipped via the inbox", async () => {
    let calls = 0;
    const skipped: string[] = [];
    await startConsumer(
      "dedupe",
      async () => {
        calls++;
      },
      { onDuplicate: (id) => skipped.push(id) },
    );
    const [id] = await writeEvents("dedupe", 1);
    await newRelay().relayBatch();
    await waitFor(() => calls === 1, 5_000, "the first delivery");
    const rows = await runAsPlatform("test: read the outbox", () =>
      h.db.transaction((em) => em.execute("select subject, envelope, headers from outbox where id = ?", [id])),
    );
    const row = rows[0] as { subject: string; envelope: Buffer; headers: Record<string, string> };
    const hdrs = natsHeaders();
    for (const [k, v] of Object.entries(row.headers)) hdrs.set(k, v);
    await h.js.publish(row.subject, row.envelope, { msgID: `${id}_again`, headers: hdrs });
    await waitFor(() => skipped.length === 1, 5_000, "the skipped redelivery");
    assert.equal(calls, 1);
    assert.deepEqual(skipped, [id]);
  });

  test("batch mode handles several events in one transaction, each exactly once across a redelivery", async () => {
    const handled: string[] = [];
    const batchSizes: number[] = [];
    const skipped: string[] = [];
    const ids = [...(await writeEvents("batched", 3, "ten_a")), ...(await writeEvents("batched", 3, "ten_b"))];
    await newRelay().relayBatch();
    await startConsumer(
      "batched",
      async () => {
        throw new Error("the batch handler is used");
      },
      {
        onDuplicate: (id) => skipped.push(id),
        batch: {
          maxMessages: 10,
          maxWaitMs: 300,
          handle: async (events, em) => {
            batchSizes.push(events.length);
            for (const e of events) {
              // Each write is checked against its own tenant: the transaction is scoped per event.
              await scopeToEvent(em, e.envelope);
              const [row] = await em.execute<{ t: string }[]>("select current_setting('app.tenant_id', true) as t");
              assert.equal(row?.t, e.envelope.tenantId);
              handled.push(e.envelope.id);
            }
          },
        },
      },
    );
    await waitFor(() => handled.length === 6, 10_000, "all six events");
    assert.deepEqual([...handled].sort(), [...ids].sort());
    assert.ok(Math.max(...batchSizes) > 1, "events already in the stream come in one batch");
    const inbox = await h.adminQuery<{ event_id: string; tenant_id: string }>(`select event_id, tenant_id from "${h.db.schema}".inbox where consumer = 'c_batched'`);
    assert.equal(inbox.length, 6);
    assert.deepEqual(inbox.filter((r) => r.tenant_id === "ten_b").length, 3);
    // A redelivery of a handled event (published again), next to a new one: the new one is handled, the old one skipped.
    const rows = await runAsPlatform("test: read the outbox", () => h.db.transaction((em) => em.execute("select subject, envelope, headers from outbox where id = ?", [ids[0]])));
    const row = rows[0] as { subject: string; envelope: Buffer; headers: Record<string, string> };
    const hdrs = natsHeaders();
    for (const [k, v] of Object.entries(row.headers)) hdrs.set(k, v);
    await h.js.publish(row.subject, row.envelope, { msgID: `${ids[0]}_again`, headers: hdrs });
    const [later] = await writeEvents("batched", 1, "ten_c");
    await newRelay().relayBatch();
    await waitFor(() => skipped.length === 1 && handled.length === 7, 10_000, "the skipped redelivery and the new event");
    assert.deepEqual(skipped, [ids[0]]);
    assert.equal(handled.at(-1), later);
    assert.equal(new Set(handled).size, 7);
  });

  test("batch mode: a poison message in a batch is parked after its tries while the others commit once", async () => {
    const good: string[] = [];
    const parked: string[] = [];
    let batchCalls = 0;
    const poisonOf = (e: ConsumedEvent): boolean => e.envelope.aggregateId === "ten_a_1";
    const ids = await writeEvents("batchpoison", 4);
    await newRelay().relayBatch();
    await startConsumer(
      "batchpoison",
      async (event, em) => {
        if (poisonOf(event)) throw new Error("cannot handle this one");
        await em.execute("select 1");
        good.push(event.envelope.id);
      },
      {
        maxDeliver: 3,
        onParked: (id) => parked.push(id),
        batch: {
          maxMessages: 10,
          maxWaitMs: 300,
          handle: async (events) => {
            batchCalls++;
            if (events.some(poisonOf)) throw new Error("a poison event in the batch");
            for (const e of events) good.push(e.envelope.id);
          },
        },
      },
    );
    await waitFor(() => parked.length === 1 && good.length === 3, 15_000, "parking and the good events");
    assert.ok(batchCalls >= 1);
    assert.deepEqual(parked, [ids[1]]);
    assert.deepEqual([...good].sort(), [ids[0], ids[2], ids[3]].sort());
    const rows = await h.adminQuery<{ event_id: string; deliveries: number }>(`select event_id, deliveries from "${h.db.schema}".parked_events where consumer = 'c_batchpoison'`);
    assert.deepEqual(rows.map((r) => [r.event_id, r.deliveries]), [[ids[1], 3]]);
    const inbox = await h.adminQuery<{ event_id: string }>(`select event_id from "${h.db.schema}".inbox where consumer = 'c_batchpoison'`);
    assert.deepEqual(inbox.map((r) => r.event_id).sort(), [ids[0], ids[2], ids[3]].sort());
  });

  test("batch mode by tenant: each tenant's events in a transaction of their own, a failing tenant's one by one while the others commit", async () => {
    const batches: string[][] = [];
    const single: string[] = [];
    const ids = [...(await writeEvents("bytenant", 3, "ten_a")), ...(await writeEvents("bytenant", 3, "ten_b")), ...(await writeEvents("bytenant", 3, "ten_c"))];
    await newRelay().relayBatch();
    await startConsumer(
      "bytenant",
      async (event) => {
        single.push(event.envelope.id);
      },
      {
        batch: {
          maxMessages: 20,
          maxWaitMs: 300,
          parallelTenants: 3,
          handle: async (events, em) => {
            const tenants = new Set(events.map((e) => e.envelope.tenantId));
            assert.equal(tenants.size, 1, "one tenant a transaction");
            // The inbox rows of this transaction are its tenant's only, scoped to it.
            const [row] = await em.execute<{ t: string }[]>("select current_setting('app.tenant_id', true) as t");
            assert.equal(row?.t, events[0]!.envelope.tenantId);
            if (tenants.has("ten_b")) throw new Error("ten_b cannot be recorded in a batch");
            batches.push(events.map((e) => e.envelope.id));
          },
        },
      },
    );
    await waitFor(() => batches.flat().length === 6 && single.length === 3, 10_000, "two tenants in batches, one by one");
    assert.deepEqual(batches.flat().sort(), [...ids.slice(0, 3), ...ids.slice(6)].sort());
    // Stream order within a tenant.
    for (const b of batches) assert.deepEqual(b, ids.filter((id) => b.includes(id)));
    assert.deepEqual([...single].sort(), ids.slice(3, 6).sort());
    const inbox = await h.adminQuery<{ event_id: string }>(`select event_id from "${h.db.schema}".inbox where consumer = 'c_bytenant'`);
    assert.deepEqual(inbox.map((r) => r.event_id).sort(), [...ids].sort());
  });

  test("a consumer told to wait for a stream that does not exist yet starts, then consumes once the stream appears", async () => {
    // The stream is created by its owner's first start, which may come after this consumer's.
    await h.jsm.streams.delete(h.stream);
    const seen: string[] = [];
    const consumer = await startConsumer("late", async (event) => {
      seen.push(event.envelope.aggregateId);
    }, { waitForStream: true });
    assert.ok(quietLogger.lines.some((l) => l.startsWith("the stream does not exist yet")));
    await ensureStream(h.jsm, { name: h.stream, subjects: [`${h.prefix}.>`] });
    await writeEvents("late", 2, "ten_late");
    const relay = newRelay();
    relay.start();
    relay.nudge();
    await waitFor(() => seen.length === 2, 15_000, "both events after the stream appeared");
    assert.deepEqual(seen.sort(), ["ten_late_0", "ten_late_1"]);
    await relay.stop();
    await consumer.stop();
  });

  test("a stream keeps events for the age it is given, and an existing stream takes a new age at the next start", async () => {
    const name = `${h.stream}_AGED`;
    const subjects = [`${h.prefix}_aged.>`];
    try {
      const created = await ensureStream(h.jsm, { name, subjects, maxAgeMs: 7 * 86_400_000 });
      assert.equal(created.config.max_age, 7 * 86_400 * 1e9);
      const updated = await ensureStream(h.jsm, { name, subjects, maxAgeMs: 30 * 86_400_000 });
      assert.equal(updated.config.max_age, 30 * 86_400 * 1e9);
      assert.equal((await h.jsm.streams.info(name)).config.max_age, 30 * 86_400 * 1e9);
    } finally {
      await h.jsm.streams.delete(name).catch(() => undefined);
    }
  });

  test("a consumer waiting for a stream stops at once", async () => {
    const consumer = new EventConsumer({ db: h.db, nc: h.nc, js: h.js, stream: `${h.stream}_NEVER`, source: "test", keys: MeshKeys.development("consumer"), subjectPrefix: h.prefix, durable: "c_never", filterSubjects: [`${h.prefix}.never.>`], handle: async () => undefined, logger: quietLogger, waitForStream: true });
    await consumer.start();
    const started = Date.now();
    await consumer.stop();
    assert.ok(Date.now() - started < 1_000);
  });

  test("an event not signed by the stream's owner is parked, never handled: unsigned, signed by another service, or moved to another subject", async () => {
    let calls = 0;
    const parked: string[] = [];
    await startConsumer(
      "forged",
      async () => {
        calls++;
      },
      { onParked: (id) => parked.push(id), maxDeliver: 1 },
    );
    const [id] = await writeEvents("forged", 1);
    const rows = await runAsPlatform("test: read the outbox", () => h.db.transaction((em) => em.execute("select subject, envelope, headers from outbox where id = ?", [id])));
    const row = rows[0] as { subject: string; envelope: Buffer; headers: Record<string, string> };
    const publish = async (subject: string, signature: string | undefined, msgID: string): Promise<void> => {
      const hdrs = natsHeaders();
      if (signature !== undefined) hdrs.set("bulwark-signature", signature);
      await h.js.publish(subject, row.envelope, { msgID, headers: hdrs });
    };
    await publish(row.subject, undefined, "forged_unsigned");
    await publish(row.subject, MeshKeys.development("intruder").sign(row.envelope), "forged_other_key");
    // The genuine signature, replayed on a subject the envelope does not name.
    await publish(`${h.prefix}.test.forged.deleted`, row.headers["bulwark-signature"], "forged_moved");
    await waitFor(() => parked.length === 3, 5_000, "three parked forgeries");
    assert.equal(calls, 0);
  });

  test("in batch mode too, forgeries among genuine events are parked and only the genuine ones handled", async () => {
    const handled: string[] = [];
    const parked: string[] = [];
    await startConsumer(
      "bforged",
      async () => {
        throw new Error("batch mode: one by one only after a failed batch");
      },
      { onParked: (id) => parked.push(id), maxDeliver: 1, batch: { maxMessages: 50, maxWaitMs: 50, handle: async (events) => void handled.push(...events.map((e) => e.envelope.id)) } },
    );
    const ids = await writeEvents("bforged", 3);
    const rows = await runAsPlatform("test: read the outbox", () => h.db.transaction((em) => em.execute("select subject, envelope, headers from outbox where id = ?", [ids[0]])));
    const row = rows[0] as { subject: string; envelope: Buffer; headers: Record<string, string> };
    const publish = async (subject: string, signature: string | undefined, msgID: string): Promise<void> => {
      const hdrs = natsHeaders();
      if (signature !== undefined) hdrs.set("bulwark-signature", signature);
      await h.js.publish(subject, row.envelope, { msgID, headers: hdrs });
    };
    await publish(row.subject, MeshKeys.development("intruder").sign(row.envelope), "bforged_other_key");
    await publish(row.subject, row.headers["bulwark-signature"]!.replace(/^./, (c) => (c === "A" ? "B" : "A")), "bforged_bad_signature");
    await newRelay().relayBatch();
    await waitFor(() => parked.length === 2 && new Set(handled).size === 3, 5_000, "two parked forgeries and three handled events");
    assert.deepEqual([...new Set(handled)].sort(), [...ids].sort());
  });

  for (const mode of ["one by one", "batch"] as const) {
    test(`${mode}: what \`relevant\` refuses is acknowledged unchecked; what it accepts is checked, so a forgery it accepts is parked, never handled`, async () => {
      const aggregate = mode === "batch" ? "brelevant" : "relevant";
      const handled: string[] = [];
      const parked: string[] = [];
      // Relevant: the events of tenant ten_a only.
      const relevant = (e: ConsumedEvent): boolean => e.envelope.tenantId === "ten_a";
      await startConsumer(
        aggregate,
        async (e) => {
          if (mode === "batch") throw new Error("batch mode: one by one only after a failed batch");
          handled.push(e.envelope.id);
        },
        {
          relevant,
          onParked: (id) => parked.push(id),
          maxDeliver: 1,
          ...(mode === "batch" ? { batch: { maxMessages: 50, maxWaitMs: 50, handle: async (events: readonly ConsumedEvent[]) => void handled.push(...events.map((e) => e.envelope.id)) } } : {}),
        },
      );
      const [mine] = await writeEvents(aggregate, 1, "ten_a");
      const [other] = await writeEvents(aggregate, 1, "ten_b");
      const read = async (id: string) =>
        (await runAsPlatform("test: read the outbox", () => h.db.transaction((em) => em.execute("select subject, envelope from outbox where id = ?", [id]))))[0] as { subject: string; envelope: Buffer };
      const [a, b] = [await read(mine!), await read(other!)];
      const forge = async (row: { subject: string; envelope: Buffer }, msgID: string): Promise<void> => {
        const hdrs = natsHeaders();
        hdrs.set("bulwark-signature", MeshKeys.development("intruder").sign(row.envelope));
        await h.js.publish(row.subject, row.envelope, { msgID, headers: hdrs });
      };
      await forge(a, `${aggregate}_forged_relevant`);
      await forge(b, `${aggregate}_forged_irrelevant`);
      await newRelay().relayBatch();
      await waitFor(() => parked.length === 1 && handled.length === 1, 5_000, "the relevant forgery parked and the genuine relevant event handled");
      // The refused forgery was acknowledged: all four were delivered and none waits for an ack but the parked
      // forgery (terminated, which an older server may still count), the first published.
      await waitFor(async () => {
        const info = await (await jetstreamManager(h.nc)).consumers.info(h.stream, `c_${aggregate}`);
        return info.num_pending === 0 && info.num_ack_pending <= 1 && info.num_redelivered === 0;
      }, 5_000, "every message acknowledged");
      assert.deepEqual(handled, [mine]);
      assert.equal(parked.length, 1, "only the forgery relevant to the consumer went through the check");
    });
  }

  test("an event without a tenant runs in the platform scope only when its signed flag says so", async () => {
    const seen: (string | undefined)[] = [];
    await startConsumer("scope", async () => {
      seen.push(currentContext()?.platformReason);
    });
    await runAsPlatform("test: a platform-wide change", () =>
      h.db.transaction((em) => h.publisher.publish(em, { aggregate: "scope", verb: "created", aggregateId: "p1", schema: TenantCreatedSchema, payload: tenantCreated("p1") })),
    );
    await newRelay().relayBatch();
    await waitFor(() => seen.length === 1, 5_000, "the platform event");
    assert.equal(seen[0], "test: a platform-wide change");
  });

  test("while no stream answers, commits do not wake the relay out of its back-off, and it says what is wrong once", async () => {
    const published: string[] = [];
    const warnings: Record<string, unknown>[] = [];
    // A JetStream client whose stream is gone: every publish fails as NATS answers then.
    const gone = { publish: async (subject: string) => (published.push(subject), Promise.reject(Object.assign(new Error("no responders"), { name: "NoRespondersError" }))) } as unknown as typeof h.js;
    const relay = new OutboxRelay({ db: h.db, js: gone, pollIntervalMs: 50, maxBackoffMs: 5_000, logger: { warn: (f) => warnings.push(f), error: () => undefined } });
    relays.push(relay);
    await writeEvents("backoff", 1);
    relay.start();
    await waitFor(() => published.length >= 1, 5_000, "the first attempt");
    for (let i = 0; i < 40; i++) {
      relay.nudge();
      await sleep(25);
    }
    // 1 s of nudges against a back-off of 100, 200, 400 ms…: a handful of attempts, not 40.
    assert.ok(published.length <= 6, `${published.length} attempts in one second of nudges`);
    assert.equal(warnings.length, 1, "one line for the outage so far");
    assert.match(String(warnings[0]?.["err"]), /no JetStream stream answers/);
    relay.nudge(true);
    const before = published.length;
    await waitFor(() => published.length > before, 1_000, "a forced nudge (reconnect) to try at once");
    await relay.stop();
  });
});
