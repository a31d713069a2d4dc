/**
 * The infrastructure contracts every Bulwark server keeps for tools and
 * orchestrators: grpc.health.v1.Health (probes, per service name) and gRPC
 * server reflection, v1 and v1alpha (so buf curl and grpcurl work with no
 * schema flag). Both are served without a credential.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { DiagnosticsService, health, reflectionV1, reflectionV1alpha, TenancyService } from "@bulwark/contracts";
import { tenancyModule } from "@bulwark/tenancy";
import { clientFor, startTestService, type Protocol, type Started } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";

const { HealthCheckResponse_ServingStatus: Status } = health;
const tenancyName = TenancyService.typeName;
let svc: Started;

before(async () => {
  svc = await startTestService(tenancyModule);
});

after(async () => {
  await svc?.stop();
});

type Reflection = typeof reflectionV1.ServerReflection | typeof reflectionV1alpha.ServerReflection;
type Answer = reflectionV1.ServerReflectionResponse["messageResponse"];

/** Sends reflection requests on one stream and returns the answers in order. */
async function reflect(service: Reflection, requests: reflectionV1.ServerReflectionRequest["messageRequest"][], protocol: Protocol = "grpc"): Promise<Answer[]> {
  const client = clientFor(service as typeof reflectionV1.ServerReflection, svc.baseUrl, undefined, protocol);
  async function* input() {
    for (const messageRequest of requests) yield { host: "", messageRequest };
  }
  const answers: Answer[] = [];
  for await (const res of client.serverReflectionInfo(input())) answers.push(res.messageResponse);
  return answers;
}

function listed(answer: Answer | undefined): string[] {
  assert.equal(answer?.case, "listServicesResponse", `expected a service list, got ${answer?.case}`);
  return answer.value.service.map((s) => s.name);
}

function descriptors(answer: Answer | undefined): FileDescriptorProto[] {
  assert.equal(answer?.case, "fileDescriptorResponse", `expected descriptors, got ${answer?.case}: ${answer?.case === "errorResponse" ? answer.value.errorMessage : ""}`);
  return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

/** Asserts that a descriptor set is closed: every import of every file is in it. */
function assertSelfContained(files: FileDescriptorProto[]): void {
  const names = new Set(files.map((f) => f.name));
  for (const f of files) for (const dep of f.dependency) assert.ok(names.has(dep), `${f.name} imports ${dep}, which is missing from the answer`);
}

describe("grpc.health.v1.Health", () => {
  test("Health.Check reports SERVING for the TenancyService name", async () => {
    const client = clientFor(health.Health, svc.baseUrl);
    assert.equal((await client.check({ service: tenancyName })).status, Status.SERVING);
  });

  test("Health.Check reports SERVING for the whole server under the empty name", async () => {
    const client = clientFor(health.Health, svc.baseUrl);
    assert.equal((await client.check({ service: "" })).status, Status.SERVING);
  });

  test("Health.Check reports SERVING for DiagnosticsService, which every server hosts", async () => {
    const client = clientFor(health.Health, svc.baseUrl);
    assert.equal((await client.check({ service: DiagnosticsService.typeName })).status, Status.SERVING);
  });

  test("Health.Check answers NOT_FOUND for a service name the server does not host", async () => {
    const client = clientFor(health.Health, svc.baseUrl);
    await refusedWith(client.check({ service: "bulwark.nope.v1.NopeService" }), Code.NotFound);
  });

  test("Health.Check answers the same over Connect and gRPC-Web", async () => {
    for (const protocol of ["connect", "grpcweb"] as const) {
      const client = clientFor(health.Health, svc.baseUrl, undefined, protocol);
      assert.equal((await client.check({ service: tenancyName })).status, Status.SERVING, protocol);
    }
  });

  test("Health.Watch yields SERVING first", async () => {
    const client = clientFor(health.Health, svc.baseUrl);
    const controller = new AbortController();
    try {
      for await (const res of client.watch({ service: tenancyName }, { signal: controller.signal })) {
        assert.equal(res.status, Status.SERVING);
        break;
      }
    } finally {
      controller.abort();
    }
  });

  test("Health.Watch yields SERVICE_UNKNOWN first for a name the server does not host", async () => {
    const client = clientFor(health.Health, svc.baseUrl);
    const controller = new AbortController();
    try {
      for await (const res of client.watch({ service: "bulwark.nope.v1.NopeService" }, { signal: controller.signal })) {
        assert.equal(res.status, Status.SERVICE_UNKNOWN);
        break;
      }
    } finally {
      controller.abort();
    }
  });
});

for (const [version, service] of [
  ["v1", reflectionV1.ServerReflection],
  ["v1alpha", reflectionV1alpha.ServerReflection],
] as const) {
  describe(`grpc.reflection.${version}.ServerReflection`, () => {
    test(`reflection ${version} lists TenancyService, DiagnosticsService, health and reflection`, async () => {
      const [answer] = await reflect(service, [{ case: "listServices", value: "" }]);
      const names = listed(answer);
      for (const name of [tenancyName, DiagnosticsService.typeName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) assert.ok(names.includes(name), `${name} is not listed: ${names.join(", ")}`);
    });

    test(`reflection ${version} fileContainingSymbol returns the file declaring TenancyService with all its imports`, async () => {
      const [answer] = await reflect(service, [{ case: "fileContainingSymbol", value: tenancyName }]);
      const files = descriptors(answer);
      const first = files[0]!;
      assert.equal(first.name, "bulwark/tenancy/v1/tenancy_service.proto");
      assert.equal(first.package, "bulwark.tenancy.v1");
      const declared = first.service.find((s) => s.name === "TenancyService");
      assert.ok(declared !== undefined, "the file declares TenancyService");
      assert.deepEqual(declared.method.map((m) => m.name).sort(), TenancyService.methods.map((m) => m.name).sort());
      for (const dep of ["bulwark/authz/v1/authz.proto", "bulwark/tenancy/v1/tenant.proto", "bulwark/validate/v1/validate.proto", "google/protobuf/field_mask.proto"]) {
        assert.ok(first.dependency.includes(dep), `tenancy_service.proto imports ${dep}`);
      }
      assertSelfContained(files);
      assert.ok(files.some((f) => f.name === "google/protobuf/descriptor.proto"), "transitive imports are included");
    });

    test(`reflection ${version} fileContainingSymbol resolves a method and a message, with or without a leading dot`, async () => {
      const answers = await reflect(service, [
        { case: "fileContainingSymbol", value: `${tenancyName}.GetTenant` },
        { case: "fileContainingSymbol", value: ".bulwark.tenancy.v1.Tenant" },
      ]);
      assert.equal(descriptors(answers[0])[0]!.name, "bulwark/tenancy/v1/tenancy_service.proto");
      assert.equal(descriptors(answers[1])[0]!.name, "bulwark/tenancy/v1/tenant.proto");
    });

    test(`reflection ${version} fileByFilename returns the file and its imports`, async () => {
      const [answer] = await reflect(service, [{ case: "fileByFilename", value: "bulwark/tenancy/v1/tenant.proto" }]);
      const files = descriptors(answer);
      assert.equal(files[0]!.name, "bulwark/tenancy/v1/tenant.proto");
      assertSelfContained(files);
    });

    test(`reflection ${version} answers NOT_FOUND in an error response for an unknown symbol, and keeps the stream open`, async () => {
      const answers = await reflect(service, [
        { case: "fileContainingSymbol", value: "bulwark.nope.v1.Nope" },
        { case: "listServices", value: "" },
      ]);
      assert.equal(answers[0]?.case, "errorResponse");
      assert.equal(answers[0]?.case === "errorResponse" ? answers[0].value.errorCode : undefined, Code.NotFound);
      assert.ok(listed(answers[1]).includes(tenancyName));
    });

    test(`reflection ${version} fileContainingExtension finds the file declaring the authorization rule option`, async () => {
      const [answer] = await reflect(service, [{ case: "fileContainingExtension", value: { $typeName: "grpc.reflection.v1.ExtensionRequest", containingType: "google.protobuf.MethodOptions", extensionNumber: 50100 } }]);
      const files = descriptors(answer);
      assert.equal(files[0]!.name, "bulwark/authz/v1/authz.proto");
      assertSelfContained(files);
    });

    test(`reflection ${version} describes every service it lists`, async () => {
      const [list] = await reflect(service, [{ case: "listServices", value: "" }]);
      const names = listed(list);
      const answers = await reflect(service, names.map((value) => ({ case: "fileContainingSymbol" as const, value })));
      const undescribed = names.filter((name, i) => {
        const answer = answers[i];
        if (answer?.case !== "fileDescriptorResponse") return true;
        const files = answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
        const pkg = name.slice(0, name.lastIndexOf("."));
        const simple = name.slice(name.lastIndexOf(".") + 1);
        assertSelfContained(files);
        return !(files[0]!.package === pkg && files[0]!.service.some((s) => s.name === simple));
      });
      assert.deepEqual(undescribed, [], "listed services whose descriptors reflection cannot return");
    });
  });
}

describe("graceful stop", () => {
  for (const protocol of ["grpc", "connect", "grpcweb"] as const) {
    test(`a server stops well within its grace period while an idle ${protocol} client stays connected`, async () => {
      const other = await startTestService(tenancyModule, { env: { SHUTDOWN_GRACE_MS: "5000" } });
      let stopped = false;
      try {
        const client = clientFor(health.Health, other.baseUrl, undefined, protocol);
        assert.equal((await client.check({ service: "" })).status, Status.SERVING);
        const started = Date.now();
        await other.stop();
        stopped = true;
        const took = Date.now() - started;
        assert.ok(took < 2500, `stopping took ${took} ms: an idle ${protocol} connection held it until the 5000 ms grace period ran out`);
      } finally {
        if (!stopped) await other.stop();
      }
    });
  }
});
