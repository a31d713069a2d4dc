/**
 * One port, three protocols: the same RPC through gRPC, Connect and gRPC-Web
 * gives the same answer and the same error, and clients that know nothing of
 * Connect — a stock @grpc/grpc-js client and `buf curl` through server
 * reflection — call the mesh too.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { fileURLToPath } from "node:url";
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { GetTenantRequestSchema, GetTenantResponseSchema, Region, TenancyService, type Tenant } from "@bulwark/contracts";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, startTestService, uniqueSlug, type Protocol, type Started } from "../support/harness.js";

const protocols: readonly Protocol[] = ["grpc", "connect", "grpcweb"];
const buf = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));
const missingId = "ten_0000000000000000000000000";

let svc: Started;
let tenant: Tenant;

before(async () => {
  svc = await startTestService(tenancyModule);
  const created = await clientFor(TenancyService, svc.baseUrl, bootstrapToken).createTenant({ slug: uniqueSlug("proto"), displayName: "Protocols Inc", region: Region.AU });
  assert.ok(created.tenant !== undefined);
  tenant = created.tenant;
});

after(async () => {
  await svc?.stop();
});

/** What a caller observes of a call: the response, or the code and message of the error. */
type Outcome = { ok: unknown } | { code: string; message: string };

async function outcome(call: Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await call };
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: Code[ce.code], message: ce.rawMessage };
  }
}

/** Runs the same call over every protocol and asserts that all outcomes are equal; returns it. */
async function sameEverywhere(call: (client: ReturnType<typeof clientFor<typeof TenancyService>>) => Promise<unknown>, token?: string, headers: Record<string, string> = {}): Promise<Outcome> {
  const outcomes = await Promise.all(protocols.map((p) => outcome(call(clientFor(TenancyService, svc.baseUrl, token, p, headers)))));
  for (let i = 1; i < protocols.length; i++) assert.deepEqual(outcomes[i], outcomes[0], `${protocols[i]} differs from ${protocols[0]}`);
  return outcomes[0]!;
}

describe("the same RPC over gRPC, Connect and gRPC-Web", () => {
  test("GetTenant returns the identical tenant over every protocol", async () => {
    const result = await sameEverywhere((c) => c.getTenant({ tenantId: tenant.id }), bootstrapToken);
    assert.ok("ok" in result);
    assert.deepEqual((result.ok as { tenant: Tenant }).tenant, tenant);
  });

  test("ResolveTenant answers NOT_FOUND with the same message over every protocol", async () => {
    const result = await sameEverywhere((c) => c.resolveTenant({ slug: uniqueSlug("missing") }));
    assert.deepEqual("code" in result && result.code, Code[Code.NotFound]);
  });

  test("ResolveTenant resolves a slug identically, without a credential, over every protocol", async () => {
    const result = await sameEverywhere((c) => c.resolveTenant({ slug: tenant.slug }));
    assert.ok("ok" in result);
    assert.equal((result.ok as { tenantId: string }).tenantId, tenant.id);
  });

  test("an INVALID_ARGUMENT names the same field with the same message over every protocol", async () => {
    const result = await sameEverywhere((c) => c.createTenant({ slug: "A_B", displayName: "ünïcödé ✓", region: Region.EU }), bootstrapToken);
    assert.ok("code" in result && result.code === Code[Code.InvalidArgument] && result.message.startsWith("slug"), JSON.stringify(result));
  });

  test("a message with non-ASCII characters reaches every protocol intact", async () => {
    const result = await sameEverywhere((c) => c.getTenant({ tenantId: "tën_ünïcödé" }), bootstrapToken);
    assert.ok("code" in result && result.message.includes("tenant_id"), JSON.stringify(result));
  });

  test("UNAUTHENTICATED and PERMISSION_DENIED are the same over every protocol", async () => {
    const unauth = await sameEverywhere((c) => c.getTenant({ tenantId: tenant.id }));
    assert.equal("code" in unauth && unauth.code, Code[Code.Unauthenticated]);
    const stranger = svc.issueToken({ id: "usr_stranger", kind: "user", tenantId: missingId, permissions: new Set(["tenancy.tenants.read"]) });
    const denied = await sameEverywhere((c) => c.getTenant({ tenantId: tenant.id }), stranger, { "bulwark-tenant": tenant.id });
    assert.equal("code" in denied && denied.code, Code[Code.PermissionDenied]);
  });

  test("every protocol echoes a caller's x-request-id", async () => {
    for (const protocol of protocols) {
      let echoed: string | null = null;
      await clientFor(TenancyService, svc.baseUrl, undefined, protocol, { "x-request-id": `contract-${protocol}` }).resolveTenant({ slug: tenant.slug }, { onHeader: (h) => (echoed = h.get("x-request-id")) });
      assert.equal(echoed, `contract-${protocol}`, protocol);
    }
  });
});

/** A unary call through a stock grpc-js client, protobuf-es doing the (de)serialization. */
function grpcJsCall<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, request: MessageShape<I>, metadata: Record<string, string>): Promise<MessageShape<O>> {
  // A local subchannel pool: the global one keeps the process alive for its 10 s cleanup cycle.
  const client = new grpc.Client(new URL(svc.baseUrl).host, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise<MessageShape<O>>((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (m: MessageShape<I>) => Buffer.from(toBinary(input, m)),
      (b: Buffer) => fromBinary(output, b),
      request,
      md,
      (err: grpc.ServiceError | null, res?: MessageShape<O>) => (err !== null ? reject(err) : resolve(res!)),
    );
  }).finally(() => client.close());
}

describe("a stock @grpc/grpc-js client", () => {
  const path = `/${TenancyService.typeName}/GetTenant`;

  test("a grpc-js client gets a tenant with a bearer token in its metadata", async () => {
    const res = await grpcJsCall(path, GetTenantRequestSchema, GetTenantResponseSchema, { $typeName: GetTenantRequestSchema.typeName, tenantId: tenant.id }, { authorization: `Bearer ${bootstrapToken}` });
    assert.deepEqual(res.tenant, tenant);
  });

  test("a grpc-js client receives NOT_FOUND, INVALID_ARGUMENT and UNAUTHENTICATED as gRPC status codes", async () => {
    const call = (tenantId: string, md: Record<string, string>) => grpcJsCall(path, GetTenantRequestSchema, GetTenantResponseSchema, { $typeName: GetTenantRequestSchema.typeName, tenantId }, md);
    const auth = { authorization: `Bearer ${bootstrapToken}` };
    await assert.rejects(call(missingId, auth), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    await assert.rejects(call("acme", auth), (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT && err.details.includes("tenant_id"));
    await assert.rejects(call(tenant.id, {}), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED);
  });
});

describe("deadlines", () => {
  /** Timers alive in this process (the server runs in it). */
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

  for (const protocol of protocols) {
    test(`a ${protocol} call with a deadline leaves no timer running on the server once it is answered`, async () => {
      const client = clientFor(TenancyService, svc.baseUrl, undefined, protocol);
      await client.resolveTenant({ slug: tenant.slug }, { timeoutMs: 3000 });
      const before = timers();
      for (let i = 0; i < 20; i++) await client.resolveTenant({ slug: tenant.slug }, { timeoutMs: 3000 });
      await new Promise((r) => setTimeout(r, 50));
      const leaked = timers() - before;
      assert.ok(leaked < 10, `${leaked} timers are still running after 20 answered calls with a 3 s deadline`);
    });
  }
});

/** Runs `buf curl` and returns its exit code, stdout and stderr. */
function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("buf curl through server reflection", () => {
  test("the buf binary is where the test expects it", () => {
    accessSync(buf, constants.X_OK);
  });

  test("buf curl resolves a tenant slug with no schema flag", async () => {
    const res = await bufCurl(["-H", `authorization: Bearer ${bootstrapToken}`, "-d", JSON.stringify({ slug: tenant.slug }), `${svc.baseUrl}/${TenancyService.typeName}/ResolveTenant`]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), { tenantId: tenant.id, active: true });
  });

  test("buf curl gets a tenant as proto JSON", async () => {
    const res = await bufCurl(["-H", `authorization: Bearer ${bootstrapToken}`, "-d", JSON.stringify({ tenant_id: tenant.id }), `${svc.baseUrl}/${TenancyService.typeName}/GetTenant`]);
    assert.equal(res.code, 0, res.stderr);
    const body = JSON.parse(res.stdout) as { tenant: Record<string, unknown> };
    assert.equal(body.tenant["id"], tenant.id);
    assert.equal(body.tenant["region"], "REGION_AU");
    assert.equal(body.tenant["state"], "TENANT_STATE_ACTIVE");
  });

  test("buf curl reports a malformed request as invalid_argument naming the field", async () => {
    const res = await bufCurl(["-d", JSON.stringify({ slug: "A_B" }), `${svc.baseUrl}/${TenancyService.typeName}/ResolveTenant`]);
    assert.notEqual(res.code, 0);
    const error = JSON.parse(res.stderr) as { code: string; message: string };
    assert.equal(error.code, "invalid_argument");
    assert.match(error.message, /^slug/);
  });

  test("buf curl lists every TenancyService method through reflection", async () => {
    const res = await bufCurl(["--list-methods", svc.baseUrl]);
    assert.equal(res.code, 0, res.stderr);
    const listed = res.stdout.split("\n").filter((l) => l !== "");
    for (const m of TenancyService.methods) assert.ok(listed.includes(`${TenancyService.typeName}/${m.name}`), `${m.name} is not listed`);
  });
});
