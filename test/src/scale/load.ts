/**
 * What the scale-out and fault suites share: clients that balance over a
 * service's replicas as a gRPC round-robin balancer does (a replica that
 * fails to connect is skipped for a moment; nothing is retried, so a client
 * sees what a real one would), a bounded load of real traffic with every
 * answer recorded, the mesh's events followed by inbox-backed consumers of
 * the suite's own, and the end-state checks (outboxes drained, every event
 * handled once, nothing parked).
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ActorKind, ApiKeyService, EncryptionService, EnvelopeSchema, Environment, Region, TenancyService, UserService, AuthService } from "@bulwark/contracts";
import type { DescService } from "@bufbuild/protobuf";
import { auditSources } from "@bulwark/audit";
import { MeshKeys } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { EventConsumer } from "@bulwark/events";
import { dependencyError, streamOf } from "@bulwark/server";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { meshBootstrapToken, type MeshService, type ProcessMesh } from "../support/process-mesh.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One answered call. */
export interface CallRecord {
  readonly op: string;
  readonly code: string;
  readonly at: number;
  readonly ms: number;
}

/** Every call's outcome, for the figures and the UNAVAILABLE window. */
export class Recorder {
  readonly calls: CallRecord[] = [];
  /** Messages of calls that failed with a code the suites never allow (INTERNAL, UNKNOWN). */
  readonly bad: string[] = [];

  async run<T>(op: string, call: () => Promise<T>): Promise<T | undefined> {
    const at = Date.now();
    try {
      const r = await call();
      this.calls.push({ op, code: "OK", at, ms: Date.now() - at });
      return r;
    } catch (err) {
      // A connection the client could not make or that broke is UNAVAILABLE, as gRPC clients report it.
      const ce = ConnectError.from(dependencyError(ConnectError.from(err), "callee"));
      const code = Code[ce.code];
      this.calls.push({ op, code, at, ms: Date.now() - at });
      if (ce.code === Code.Internal || ce.code === Code.Unknown) this.bad.push(`${op}: ${code} ${ce.rawMessage}`);
      return undefined;
    }
  }

  /** Calls by operation and code. */
  table(): Record<string, Record<string, number>> {
    const t: Record<string, Record<string, number>> = {};
    for (const c of this.calls) {
      const row = (t[c.op] ??= {});
      row[c.code] = (row[c.code] ?? 0) + 1;
    }
    return t;
  }

  /** Calls by code. */
  codes(): Record<string, number> {
    const t: Record<string, number> = {};
    for (const c of this.calls) t[c.code] = (t[c.code] ?? 0) + 1;
    return t;
  }

  ok(op: string): number {
    return this.calls.filter((c) => c.op === op && c.code === "OK").length;
  }
}

/**
 * A transport over a service's replicas: round robin, skipping for
 * `ejectMs` a replica whose connection failed (a gRPC client's subchannel
 * in TRANSIENT_FAILURE), trying every replica before giving up. No call is
 * retried once sent.
 */
export function balancedTransport(urls: string, headers: Record<string, string> = {}, ejectMs = 1000): Transport {
  const interceptor: Interceptor = (next) => (req) => {
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };
  const replicas = urls.split(",").map((baseUrl) => ({ transport: createGrpcTransport({ baseUrl, interceptors: [interceptor] }), downUntil: 0 }));
  let next = 0;
  const pick = (): (typeof replicas)[number] => {
    for (let i = 0; i < replicas.length; i++) {
      const r = replicas[next++ % replicas.length]!;
      if (r.downUntil <= Date.now()) return r;
    }
    return replicas[next++ % replicas.length]!;
  };
  const refused = (err: unknown): boolean => /ECONNREFUSED/.test(String((err as { cause?: { code?: string } }).cause?.code ?? "")) || /ECONNREFUSED/.test(ConnectError.from(err).rawMessage);
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const r = pick();
      try {
        return await r.transport.unary(method, signal, timeoutMs, header, input, contextValues);
      } catch (err) {
        // Nothing was sent to a replica that refused the connection: the balancer picks another, as gRPC does.
        if (!refused(err)) throw err;
        r.downUntil = Date.now() + ejectMs;
        const other = pick();
        if (other === r) throw err;
        try {
          return await other.transport.unary(method, signal, timeoutMs, header, input, contextValues);
        } catch (err2) {
          if (refused(err2)) other.downUntil = Date.now() + ejectMs;
          throw err2;
        }
      }
    },
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return pick().transport.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  };
}

/** A typed client over a service's replicas, with headers. */
export function balancedClient<S extends DescService>(service: S, urls: string, headers: Record<string, string> = {}): Client<S> {
  return createClient(service, balancedTransport(urls, headers));
}

const operator = { authorization: `Bearer ${meshBootstrapToken}` };

/** A tenant of the load: its slug, a signed-in developer, their API key. */
export interface LoadTenant {
  readonly id: string;
  readonly slug: string;
  readonly userId: string;
  readonly email: string;
  readonly password: string;
  readonly accessToken: string;
  readonly apiKey: string;
}

/** Creates `n` tenants, each with a developer who signs in and makes an API key (real RPCs only). */
export async function setUpTenants(mesh: ProcessMesh, n: number): Promise<LoadTenant[]> {
  const tenancy = balancedClient(TenancyService, mesh.urls("tenancy"), operator);
  const out: LoadTenant[] = [];
  for (let i = 0; i < n; i++) {
    const slug = `scale-${mesh.prefix.slice(-8)}-${i}`;
    const { tenant } = await tenancy.createTenant({ slug, displayName: `Scale ${i}`, region: Region.EU });
    const tenantId = tenant!.id;
    const users = balancedClient(UserService, mesh.urls("identity"), { ...operator, "bulwark-tenant": tenantId });
    const email = `dev${i}@${slug}.test`;
    const password = `Scale-suite-passphrase-${i}-${mesh.prefix}`;
    const created = await users.createUser({ email, displayName: `Dev ${i}`, roleIds: ["system:developer"], returnInvitationToken: true });
    await balancedClient(UserService, mesh.urls("identity")).acceptInvitation({ invitationToken: created.invitationToken, password });
    const signed = await balancedClient(AuthService, mesh.urls("identity")).signIn({ tenantSlug: slug, email, password, device: "scale" });
    if (signed.result.case !== "tokens") throw new Error(`sign-in of ${email} asked for ${String(signed.result.case)}`);
    const accessToken = signed.result.value.accessToken;
    const key = await balancedClient(ApiKeyService, mesh.urls("keys"), { authorization: `Bearer ${accessToken}` }).createApiKey({ name: "scale", environment: Environment.LIVE, scopes: ["read"] });
    out.push({ id: tenantId, slug, userId: created.user!.id, email, password, accessToken, apiKey: key.token });
  }
  return out;
}

/** Change calls the load makes, by operation name; each OK answer committed one event of `subject`. */
export const changeOps: Record<string, { service: MeshService; subject: string }> = {
  updateTenant: { service: "tenancy", subject: "tenancy.tenant.updated" },
  updateUser: { service: "identity", subject: "identity.user.updated" },
  createUser: { service: "identity", subject: "identity.user.invited" },
  suspendUser: { service: "identity", subject: "identity.user.suspended" },
};

/**
 * A bounded load: `workers` loops, each making one call at a time with a
 * pause of `pauseMs`, cycling through sign-ins, tenant and user changes,
 * API-key verifications and encryptions, until `stop()`.
 */
export function startLoad(mesh: ProcessMesh, tenants: readonly LoadTenant[], rec: Recorder, opts: { workers: number; pauseMs: number }): { stop(): Promise<void> } {
  let stopping = false;
  const tenancy = balancedClient(TenancyService, mesh.urls("tenancy"), operator);
  const auth = balancedClient(AuthService, mesh.urls("identity"));
  const keys = balancedClient(ApiKeyService, mesh.urls("keys"), operator);
  const usersOf = new Map(tenants.map((t) => [t.id, balancedClient(UserService, mesh.urls("identity"), { ...operator, "bulwark-tenant": t.id })]));
  const encOf = new Map(tenants.map((t) => [t.id, balancedClient(EncryptionService, mesh.urls("keys"), { ...operator, "bulwark-tenant": t.id })]));
  let n = 0;
  const run = Math.random().toString(36).slice(2, 8);
  const step = async (w: number): Promise<void> => {
    const i = n++;
    const t = tenants[i % tenants.length]!;
    const users = usersOf.get(t.id)!;
    switch (i % 8) {
      case 0:
        await rec.run("signIn", () => auth.signIn({ tenantSlug: t.slug, email: t.email, password: t.password, device: `w${w}` }));
        break;
      case 1:
        await rec.run("updateTenant", () => tenancy.updateTenant({ tenantId: t.id, displayName: `Scale load ${i}`, updateMask: create(FieldMaskSchema, { paths: ["display_name"] }) }));
        break;
      case 2:
      case 5:
        await rec.run("verifyApiKey", () => keys.verifyApiKey({ token: t.apiKey }));
        break;
      case 3:
        await rec.run("updateUser", () => users.updateUser({ userId: t.userId, displayName: `Dev load ${i}`, updateMask: create(FieldMaskSchema, { paths: ["display_name"] }) }));
        break;
      case 4:
      case 7:
        await rec.run("encrypt", () => encOf.get(t.id)!.encrypt({ plaintext: new TextEncoder().encode(`secret ${i}`), purpose: "scale.test", context: { row: String(i) } }));
        break;
      case 6: {
        // A short-lived user: invited, then suspended (keys' consumer revokes their keys on user.suspended).
        const res = await rec.run("createUser", () => users.createUser({ email: `tmp${i}-${run}@${t.slug}.test`, displayName: "Temp", roleIds: ["system:member"] }));
        if (res?.user !== undefined) await rec.run("suspendUser", () => users.suspendUser({ userId: res.user!.id, reason: "scale suite" }));
        break;
      }
    }
  };
  const loops = Array.from({ length: opts.workers }, async (_, w) => {
    while (!stopping) {
      await step(w);
      await sleep(opts.pauseMs);
    }
  });
  return {
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

/** A consumer of one service's stream that records, in an inbox of its own, every event it handles. */
export interface Follower {
  readonly service: MeshService;
  readonly handled: Map<string, number>;
  duplicates: number;
  redelivered: number;
  stop(): Promise<void>;
}

/**
 * Follows every service's stream with inbox-backed durable consumers of the
 * suite's own (schema `<prefix>_followers` in the same database), checking
 * each publisher's signature, as the mesh's own consumers do.
 */
export async function followStreams(mesh: ProcessMesh, adminUrl: string, natsUrl: string): Promise<{ followers: Follower[]; stop(): Promise<void> }> {
  const schema = `${mesh.prefix}_followers`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create schema "${schema}"`);
  await admin.query(`create table "${schema}".inbox (consumer text not null, event_id text not null, tenant_id text null, handled_at timestamptz not null default now(), primary key (consumer, event_id))`);
  await admin.query(`create table "${schema}".parked_events (id bigserial primary key, consumer text not null, event_id text not null, tenant_id text null, subject text not null, envelope bytea not null, headers jsonb not null default '{}'::jsonb, error text not null, deliveries integer not null, parked_at timestamptz not null default now())`);
  await admin.end();
  const db = await Database.open({ clientUrl: adminUrl, schema, entities: [], poolMax: 4 });
  const nc: NatsConnection = await connect({ servers: natsUrl.split(","), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const keys = MeshKeys.fromConfig("scale-follower", Buffer.alloc(32, 7).toString("base64url"), mesh.publicKeys);
  const followers: Follower[] = [];
  const consumers: EventConsumer[] = [];
  for (const service of mesh.services) {
    const f: Follower = { service, handled: new Map(), duplicates: 0, redelivered: 0, stop: async () => undefined };
    const consumer = new EventConsumer({
      db,
      nc,
      js: jetstream(nc),
      keys,
      stream: streamOf(mesh.prefix, service).name,
      source: service,
      subjectPrefix: mesh.prefix,
      durable: `scale_${service}`,
      filterSubjects: [`${mesh.prefix}.${service}.>`],
      logger: { warn: () => undefined, error: () => undefined },
      backoffMs: [200],
      maxDeliver: 20,
      ackWaitMs: 5000,
      onDuplicate: () => void f.duplicates++,
      onRedelivered: () => void f.redelivered++,
      async handle(event) {
        f.handled.set(event.envelope.id, (f.handled.get(event.envelope.id) ?? 0) + 1);
      },
    });
    await consumer.start();
    consumers.push(consumer);
    followers.push(f);
  }
  return {
    followers,
    async stop() {
      for (const c of consumers) await c.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
      await db.close().catch(() => undefined);
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`drop schema if exists "${schema}" cascade`);
      await a.end();
    },
  };
}

/** An outbox row, decoded. */
export interface OutboxEvent {
  readonly service: MeshService;
  readonly id: string;
  readonly subject: string;
  readonly aggregateId: string;
  /** The envelope's tenant ("" for a platform-wide event). */
  readonly tenantId: string;
  readonly sent: boolean;
  /** The envelope's actor kind (ActorKind) and the client address of the call that wrote it. */
  readonly actorKind: number;
  readonly clientIp: string;
}

/** Every row of every service's outbox. */
export async function outboxEvents(mesh: ProcessMesh, adminUrl: string): Promise<OutboxEvent[]> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const out: OutboxEvent[] = [];
    for (const service of mesh.services) {
      const rows = (await admin.query<{ id: string; subject: string; envelope: Buffer; sent: boolean }>(`select id, subject, envelope, sent_at is not null as sent from "${mesh.schemaOf(service)}".outbox`)).rows;
      for (const r of rows) {
        const envelope = fromBinary(EnvelopeSchema, r.envelope);
        out.push({ service, id: r.id, subject: r.subject, aggregateId: envelope.aggregateId, tenantId: envelope.tenantId, sent: r.sent, actorKind: envelope.actor?.kind ?? 0, clientIp: envelope.clientIp });
      }
    }
    return out;
  } finally {
    await admin.end();
  }
}

/** Unsent outbox rows and the age of the oldest, over every service. */
export async function outboxBacklog(mesh: ProcessMesh, admin: pg.Client): Promise<{ unsent: number; oldestMs: number }> {
  let unsent = 0;
  let oldestMs = 0;
  for (const service of mesh.services) {
    const r = (await admin.query<{ n: string; age: string | null }>(`select count(*)::text as n, (extract(epoch from now() - min(created_at)) * 1000)::bigint::text as age from "${mesh.schemaOf(service)}".outbox where sent_at is null`)).rows[0]!;
    unsent += Number(r.n);
    oldestMs = Math.max(oldestMs, Number(r.age ?? 0));
  }
  return { unsent, oldestMs };
}

const bySubject =
  (pattern: RegExp) =>
  (e: OutboxEvent): boolean =>
    pattern.test(e.subject);

/**
 * The events audit's monitor must act on (and so record in its inbox): it
 * acknowledges events no rule reads without a transaction. A conservative
 * subset of its rules (services/audit/src/monitoring/rules.ts), so the check
 * never expects what the monitor rightly skips: sign-ins failed, sign-ins
 * from an address, second factors disabled or reset, and any tenant event
 * of an API key's call from an address.
 */
const monitorActsOn = (e: OutboxEvent): boolean =>
  e.tenantId !== "" &&
  (/\.identity\.user\.(sign_in_failed|mfa_disabled|mfa_reset)$/.test(e.subject) || (/\.identity\.user\.signed_in$/.test(e.subject) && e.clientIp !== "") || (e.actorKind === ActorKind.API_KEY && e.clientIp !== ""));

/** The mesh's own durable consumers whose handling the suites check: consumer, where its inbox is, whose stream, which events it acts on. */
export const meshConsumers: readonly { durable: string; service: MeshService; source: MeshService; relevant: (e: OutboxEvent) => boolean }[] = [
  { durable: "tenancy_tenant_status", service: "tenancy", source: "tenancy", relevant: bySubject(/\.tenancy\.tenant\./) },
  { durable: "keys_owner_revocations", service: "keys", source: "identity", relevant: bySubject(/\.identity\.user\.(suspended|deleted)$/) },
  // audit's trail records every event of every source stream; its monitor the ones its rules read, of the streams present when it starts.
  ...auditSources.map((s) => ({ durable: `audit-trail-${s.service}`, service: "audit" as const, source: s.service as MeshService, relevant: bySubject(/./) })),
  ...(["tenancy", "identity", "keys"] as const).map((s) => ({ durable: `audit-monitor-${s}`, service: "audit" as const, source: s, relevant: monitorActsOn })),
];

/**
 * The end state every suite asserts: every outbox row sent; each follower
 * handled each event of its stream exactly once; every relevant event is in
 * the inbox of each mesh consumer; nothing parked. Returns the problems found.
 */
export async function checkDelivery(mesh: ProcessMesh, adminUrl: string, followers: readonly Follower[]): Promise<{ problems: string[]; events: number; byService: Record<string, number> }> {
  const events = await outboxEvents(mesh, adminUrl);
  const problems: string[] = [];
  const unsent = events.filter((e) => !e.sent);
  if (unsent.length > 0) problems.push(`${unsent.length} outbox rows left unsent (${unsent.slice(0, 3).map((e) => e.subject).join(", ")})`);
  const byService: Record<string, number> = {};
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const f of followers) {
      const own = events.filter((e) => e.service === f.service);
      byService[f.service] = own.length;
      // Exactly once in effect is what committed: the follower's inbox (one row per event id).
      // A handler run whose transaction a Postgres restart cut off runs again; that is no duplicate.
      const committed = (await admin.query<{ event_id: string }>(`select event_id from "${mesh.prefix}_followers".inbox where consumer = $1`, [`scale_${f.service}`])).rows.map((r) => r.event_id);
      const inbox = new Set(committed);
      const missing = own.filter((e) => !inbox.has(e.id));
      const unknown = committed.filter((id) => !own.some((e) => e.id === id));
      if (missing.length > 0) problems.push(`${f.service}: ${missing.length} events never handled by the follower (${missing.slice(0, 3).map((e) => e.subject).join(", ")})`);
      if (unknown.length > 0) problems.push(`${f.service}: ${unknown.length} events handled that no outbox holds`);
    }
    for (const c of meshConsumers) {
      if (!mesh.services.includes(c.service) || !mesh.services.includes(c.source)) continue;
      const inbox = new Set((await admin.query<{ event_id: string }>(`select event_id from "${mesh.schemaOf(c.service)}".inbox where consumer = $1`, [c.durable])).rows.map((r) => r.event_id));
      const relevant = events.filter((e) => e.service === c.source && c.relevant(e));
      const missing = relevant.filter((e) => !inbox.has(e.id));
      if (missing.length > 0) problems.push(`${c.durable}: ${missing.length} of ${relevant.length} events not in its inbox`);
    }
    for (const service of mesh.services) {
      const parked = (await admin.query<{ consumer: string; error: string }>(`select consumer, error from "${mesh.schemaOf(service)}".parked_events`)).rows;
      if (parked.length > 0) problems.push(`${service}: ${parked.length} parked events (${parked[0]!.consumer}: ${parked[0]!.error})`);
    }
  } finally {
    await admin.end();
  }
  return { problems, events: events.length, byService };
}

/** Every OK change call committed its event: OK answers of each change ≤ its events in the outbox. */
export async function checkCommittedChanges(mesh: ProcessMesh, adminUrl: string, rec: Recorder): Promise<string[]> {
  const events = await outboxEvents(mesh, adminUrl);
  const problems: string[] = [];
  for (const [op, { service, subject }] of Object.entries(changeOps)) {
    if (!mesh.services.includes(service)) continue;
    const ok = rec.ok(op);
    const published = events.filter((e) => e.subject === `${mesh.prefix}.${subject}`).length;
    if (published < ok) problems.push(`${op}: ${ok} OK answers but ${published} ${subject} events`);
  }
  return problems;
}

/** The log lines of the mesh's processes that name the request ids in `bad` (for a failure's message). */
export function logsOf(mesh: ProcessMesh, bad: readonly string[]): string {
  const ids = bad.flatMap((b) => [...b.matchAll(/req_[a-z0-9]+/g)].map((m) => m[0]));
  const lines = mesh.services.flatMap((s) => mesh.replicas(s).flatMap((r) => r.output().split("\n").filter((l) => ids.some((id) => l.includes(id)))));
  return lines.join("\n").slice(0, 4000);
}
