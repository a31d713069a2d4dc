/**
 * Tenant context propagation across a service-to-service call and across a
 * NATS event. An in-process "edge" service (a real BulwarkServer with its
 * own CallPipeline, hosting DiagnosticsService) calls tenancy through
 * `createServiceTransport`, so the hop is the real client interceptor, the
 * real signed assertion and tenancy's real pipeline.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { createTenancyClient, DiagnosticsService, file_bulwark_diagnostics_v1alpha1_diagnostics_service, Region, TenancyService, type TenancyClient } from "@bulwark/contracts";
import { randomBytes } from "node:crypto";
import { BootstrapCredentialResolver, createLogger, currentContext, MeshKeys, ServiceAssertions, StaticTokenResolver } from "@bulwark/core";
import { TenantStatusCache } from "@bulwark/events";
import { BulwarkServer, CallPipeline, createServiceTransport, HealthStatus, streamOf } from "@bulwark/server";
import { tenancyModule } from "@bulwark/tenancy";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { bootstrapToken, clientFor, eventually, natsUrl, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { collectEvents, expectCode, quietLogger, type Collector } from "./support-e2e.js";

/** What the edge's Ping handler is asked to do (JSON in the payload). */
interface Command {
  op: "get" | "rename";
  tenantId: string;
  displayName?: string;
  /** Use the client whose assertions are signed with a wrong secret. */
  forged?: boolean;
}

/** What it saw and what tenancy answered. */
interface Seen {
  edge: { tenantId?: string; principal?: string; requestId: string };
  code: string;
  tenantId?: string;
  displayName?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

describe("tenant context propagation", () => {
  let svc: Started | undefined;
  let events: Collector | undefined;
  let edgeServer: BulwarkServer | undefined;
  let edgeNc: NatsConnection | undefined;
  let edgeStatus: TenantStatusCache | undefined;
  let edgeUrl = "";
  const edgeTokens = new StaticTokenResolver([]);
  let tenantA = "";
  let tenantB = "";

  before(async () => {
    svc = await startTestService(tenancyModule);
    const { db, nc, js } = svc.running.deps;
    events = await collectEvents({ db, nc, js, stream: streamOf(svc.prefix, "tenancy").name, source: "tenancy", subjectPrefix: svc.prefix, durable: "e2e_propagation", filterSubjects: [`${svc.prefix}.tenancy.tenant.>`] });

    const assertions = ServiceAssertions.development("edge");
    const tenancy = createTenancyClient(createServiceTransport(svc.baseUrl, assertions, "tenancy"));
    // An edge that signs with a key that is not edge's.
    const forgedTenancy = createTenancyClient(createServiceTransport(svc.baseUrl, new ServiceAssertions(new MeshKeys({ service: "edge", seed: randomBytes(32) })), "tenancy"));
    const run = async (client: TenancyClient, cmd: Command): Promise<Omit<Seen, "edge">> => {
      try {
        const res =
          cmd.op === "get"
            ? await client.getTenant({ tenantId: cmd.tenantId })
            : await client.updateTenant({ tenantId: cmd.tenantId, displayName: cmd.displayName ?? "", updateMask: create(FieldMaskSchema, { paths: ["display_name"] }) });
        return { code: "OK", tenantId: res.tenant?.id ?? "", displayName: res.tenant?.displayName ?? "" };
      } catch (err) {
        return { code: Code[ConnectError.from(err).code] };
      }
    };
    const impl: ServiceImpl<typeof DiagnosticsService> = {
      async ping(req) {
        const ctx = currentContext();
        const cmd = JSON.parse(decoder.decode(req.payload)) as Command;
        const result = await run(cmd.forged === true ? forgedTenancy : tenancy, cmd);
        const seen: Seen = { edge: { tenantId: ctx?.tenantId, principal: ctx?.principal?.id, requestId: ctx?.requestId ?? "" }, ...result };
        return { payload: encoder.encode(JSON.stringify(seen)) };
      },
    };
    edgeNc = await connect({ servers: natsUrl });
    edgeStatus = new TenantStatusCache({ keys: MeshKeys.development("edge"), logger: quietLogger });
    await edgeStatus.start(edgeNc, svc.prefix);
    const logger = createLogger("edge", "silent");
    const pipeline = new CallPipeline({ resolvers: [edgeTokens, new BootstrapCredentialResolver(bootstrapToken)], assertions, logger, tenantGate: edgeStatus });
    edgeServer = new BulwarkServer({
      services: [{ service: DiagnosticsService, file: file_bulwark_diagnostics_v1alpha1_diagnostics_service, impl: impl as never }],
      pipeline,
      health: new HealthStatus([DiagnosticsService.typeName]),
      logger,
    });
    edgeUrl = `http://127.0.0.1:${await edgeServer.listen(0, "127.0.0.1")}`;

    const ops = clientFor(TenancyService, svc.baseUrl, bootstrapToken);
    tenantA = (await ops.createTenant({ slug: uniqueSlug("a"), displayName: "A", region: Region.EU })).tenant!.id;
    tenantB = (await ops.createTenant({ slug: uniqueSlug("b"), displayName: "B", region: Region.EU })).tenant!.id;
  });

  after(async () => {
    await edgeServer?.close(500).catch(() => undefined);
    edgeStatus?.stop();
    await edgeNc?.close().catch(() => undefined);
    await events?.stop().catch(() => undefined);
    await svc?.stop();
  });

  async function viaEdge(token: string, cmd: Command, headers: Record<string, string> = {}): Promise<Seen> {
    const edge = clientFor(DiagnosticsService, edgeUrl, token, "grpc", headers);
    const res = await edge.ping({ payload: encoder.encode(JSON.stringify(cmd)) });
    return JSON.parse(decoder.decode(res.payload)) as Seen;
  }

  test("a tenant user's call through another service reaches tenancy as that tenant and principal", async () => {
    const token = `edge-user-a-${uniqueSlug()}`;
    edgeTokens.add(token, { id: "usr_a_prop", kind: "user", tenantId: tenantA, permissions: new Set(["tenancy.tenants.read", "tenancy.tenants.update"]) });

    const own = await viaEdge(token, { op: "get", tenantId: tenantA }, { "x-request-id": "req_e2e_hop_get" });
    assert.deepEqual(own.edge, { tenantId: tenantA, principal: "usr_a_prop", requestId: "req_e2e_hop_get" });
    assert.equal(own.code, "OK");
    assert.equal(own.tenantId, tenantA);

    // Tenancy scopes the hop to A: B is invisible, and not because the hop lost its identity.
    const other = await viaEdge(token, { op: "get", tenantId: tenantB });
    assert.equal(other.code, "NotFound");
    const rename = await viaEdge(token, { op: "rename", tenantId: tenantB, displayName: "pwned via edge" });
    assert.equal(rename.code, "NotFound");
    const b = await clientFor(TenancyService, svc!.baseUrl, bootstrapToken).getTenant({ tenantId: tenantB });
    assert.equal(b.tenant?.displayName, "B");

    // What tenancy saw, as recorded in the event of a change made through the hop.
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const renamed = await viaEdge(token, { op: "rename", tenantId: tenantA, displayName: "A renamed via edge" }, { "x-request-id": "req_e2e_hop_rename", traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    assert.equal(renamed.code, "OK");
    assert.equal(renamed.displayName, "A renamed via edge");
    await eventually(() => events!.of("updated", tenantA).length > 0, 5000);
    const [ev] = events!.of("updated", tenantA);
    assert.equal(ev!.envelope.tenantId, tenantA);
    assert.equal(ev!.envelope.actor?.id, "usr_a_prop");
    assert.equal(ev!.envelope.actor?.viaService, "edge");
    assert.equal(ev!.envelope.requestId, "req_e2e_hop_rename");
    assert.match(ev!.envelope.traceparent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`), "the caller's trace reaches tenancy's event");
    assert.equal(ev!.headers["traceparent"]?.split("-")[1], traceId);
    assert.equal(ev!.traceId, traceId, "the consumer's handler runs in the caller's trace");
  });

  test("the hop carries the user's permissions, not the service's", async () => {
    const token = `edge-reader-a-${uniqueSlug()}`;
    edgeTokens.add(token, { id: "usr_a_reader", kind: "user", tenantId: tenantA, permissions: new Set(["tenancy.tenants.read"]) });
    assert.equal((await viaEdge(token, { op: "get", tenantId: tenantA })).code, "OK");
    assert.equal((await viaEdge(token, { op: "rename", tenantId: tenantA, displayName: "nope" })).code, "PermissionDenied");
  });

  test("an operator acting in a tenant by header is scoped to that tenant at the edge and through the hop", async () => {
    const seen = await viaEdge(bootstrapToken, { op: "get", tenantId: tenantB }, { "bulwark-tenant": tenantB });
    assert.equal(seen.edge.tenantId, tenantB);
    assert.equal(seen.edge.principal, "bootstrap");
    assert.equal(seen.code, "OK");
    assert.equal(seen.tenantId, tenantB);
  });

  test("a forged, garbled or absent service assertion is refused", async () => {
    const token = `edge-user-a2-${uniqueSlug()}`;
    edgeTokens.add(token, { id: "usr_a_forged", kind: "user", tenantId: tenantA, permissions: new Set(["tenancy.tenants.read"]) });
    // An edge whose assertions are signed with another secret.
    assert.equal((await viaEdge(token, { op: "get", tenantId: tenantA, forged: true })).code, "Unauthenticated");

    // Directly: a tenant-less service assertion would be a platform principal, so forging one must fail.
    const forged = await new ServiceAssertions(new MeshKeys({ service: "keys", seed: randomBytes(32) })).sign({ requestId: "req_forged" }, "tenancy");
    const direct = clientFor(TenancyService, svc!.baseUrl, undefined, "grpc", { "bulwark-service-assertion": forged });
    await expectCode(direct.getTenant({ tenantId: tenantB }), Code.Unauthenticated);
    await expectCode(clientFor(TenancyService, svc!.baseUrl, undefined, "connect", { "bulwark-service-assertion": forged }).getTenant({ tenantId: tenantB }), Code.Unauthenticated);
    await expectCode(clientFor(TenancyService, svc!.baseUrl, undefined, "grpc", { "bulwark-service-assertion": "garbage" }).getTenant({ tenantId: tenantB }), Code.Unauthenticated);
    // A valid tenant token does not make a forged assertion acceptable.
    await expectCode(clientFor(TenancyService, svc!.baseUrl, bootstrapToken, "grpc", { "bulwark-service-assertion": forged }).getTenant({ tenantId: tenantB }), Code.Unauthenticated);
    // No assertion and no credential at all.
    await expectCode(clientFor(TenancyService, svc!.baseUrl).getTenant({ tenantId: tenantB }), Code.Unauthenticated);
  });

  test("an event restores tenant, actor and request id in the consumer", async () => {
    const ops = clientFor(TenancyService, svc!.baseUrl, bootstrapToken, "grpc", { "x-request-id": "req_e2e_create_c" });
    const slug = uniqueSlug("c");
    const tenantC = (await ops.createTenant({ slug, displayName: "C", region: Region.EU })).tenant!.id;
    const suspender = clientFor(TenancyService, svc!.baseUrl, bootstrapToken, "connect", { "x-request-id": "req_e2e_suspend_c" });
    await suspender.suspendTenant({ tenantId: tenantC, reason: "e2e" });
    const userToken = svc!.issueToken({ id: "usr_b_direct", kind: "user", tenantId: tenantB, permissions: new Set(["tenancy.tenants.update"]) });
    await clientFor(TenancyService, svc!.baseUrl, userToken, "grpc", { "x-request-id": "req_e2e_user_b" }).updateTenant({
      tenantId: tenantB,
      displayName: "B by its user",
      updateMask: create(FieldMaskSchema, { paths: ["display_name"] }),
    });

    await eventually(() => events!.of("created", tenantC).length > 0 && events!.of("suspended", tenantC).length > 0 && events!.of("updated", tenantB).length > 0, 5000);
    const created = events!.of("created", tenantC)[0]!;
    assert.equal(created.subject, `${svc!.prefix}.tenancy.tenant.created`);
    assert.equal(created.ctx?.tenantId, tenantC);
    assert.equal(created.ctx?.principal?.id, "bootstrap");
    assert.equal(created.ctx?.principal?.kind, "bootstrap");
    assert.equal(created.ctx?.requestId, "req_e2e_create_c");
    assert.equal(created.ctx?.platformReason, undefined, "a tenant's event is handled in the tenant, not in platform scope");
    assert.equal(created.headers["bulwark-tenant"], tenantC);

    const suspended = events!.of("suspended", tenantC)[0]!;
    assert.equal(suspended.ctx?.tenantId, tenantC);
    assert.equal(suspended.ctx?.principal?.id, "bootstrap");
    assert.equal(suspended.ctx?.requestId, "req_e2e_suspend_c");

    const updated = events!.of("updated", tenantB).at(-1)!;
    assert.equal(updated.ctx?.tenantId, tenantB);
    assert.equal(updated.ctx?.principal?.id, "usr_b_direct");
    assert.equal(updated.ctx?.principal?.kind, "user");
    assert.equal(updated.ctx?.principal?.viaService, "tenancy");
    assert.equal(updated.ctx?.principal?.permissions.size, 0, "a consumer acts on the event, not with the actor's rights");
    assert.equal(updated.ctx?.requestId, "req_e2e_user_b");
  });
});
