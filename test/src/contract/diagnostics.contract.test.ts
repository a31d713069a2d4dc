/**
 * The contract of bulwark.diagnostics.v1alpha1.DiagnosticsService, which
 * every server hosts (benchmarks compare its Ping with real RPCs): Ping is
 * public, echoes its payload, and refuses a payload over 1024 bytes.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { DiagnosticsService } from "@bulwark/contracts";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, startTestService, type Protocol, type Started } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";

const protocols: readonly Protocol[] = ["grpc", "connect", "grpcweb"];
let svc: Started;

before(async () => {
  svc = await startTestService(tenancyModule);
});

after(async () => {
  await svc?.stop();
});

test("Ping echoes its payload unchanged without a credential, over every protocol", async () => {
  const payload = new Uint8Array(256).map((_, i) => i);
  for (const protocol of protocols) {
    const client = clientFor(DiagnosticsService, svc.baseUrl, undefined, protocol);
    const res = await client.ping({ payload });
    assert.deepEqual([...res.payload], [...payload], protocol);
  }
});

test("Ping echoes an empty payload", async () => {
  const res = await clientFor(DiagnosticsService, svc.baseUrl).ping({});
  assert.equal(res.payload.length, 0);
});

test("Ping accepts a payload of exactly 1024 bytes", async () => {
  const payload = new Uint8Array(1024).fill(7);
  const res = await clientFor(DiagnosticsService, svc.baseUrl, bootstrapToken).ping({ payload });
  assert.equal(res.payload.length, 1024);
});

test("Ping refuses a payload over 1024 bytes with INVALID_ARGUMENT naming payload, over every protocol", async () => {
  for (const protocol of protocols) {
    const client = clientFor(DiagnosticsService, svc.baseUrl, undefined, protocol);
    await refusedWith(client.ping({ payload: new Uint8Array(1025) }), Code.InvalidArgument, "payload");
  }
});
