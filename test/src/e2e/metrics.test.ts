/**
 * Every service's Prometheus metrics, scraped from real running services:
 * the RED counters move for the method called with the code it answered,
 * the latency histogram exists, and the outbox, consumer, pool, cache,
 * argon2 and scheduler series are there, each with the service label.
 *
 * With BULWARK_METRICS_DUMP_DIR set, the last scrape of each service is
 * written to `<dir>/<service>.prom`, which deploy/scripts/metrics-check.sh
 * hands to `promtool check metrics`.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, eventually, startMesh, startTestService, type Started, type TestMesh } from "../support/harness.js";
import { expectCode } from "./support-e2e.js";
import { createUser, signIn, tenantWithSlug } from "../contract/support-auth.js";
import type { IdentityMesh } from "../contract/support-identity.js";

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of an OpenMetrics/Prometheus text exposition (no escapes in our label values). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    assert.ok(m !== null, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample with `name` and at least `labels`, or undefined. */
function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

/** What Prometheus sends (it prefers OpenMetrics). */
const prometheusAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

async function scrape(svc: Started, url?: string, accept = prometheusAccept): Promise<{ text: string; samples: Sample[]; contentType: string }> {
  const res = await fetch(url ?? `${svc.baseUrl}/metrics`, { headers: { accept } });
  assert.equal(res.status, 200);
  const text = await res.text();
  const dir = process.env["BULWARK_METRICS_DUMP_DIR"];
  if (url === undefined && dir !== undefined && dir !== "") {
    // promtool reads the Prometheus text format only: dump that rendering of the same metrics.
    const plain = await (await fetch(`${svc.baseUrl}/metrics`)).text();
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${svc.config.SERVICE}.prom`), plain);
  }
  return { text, samples: parse(text), contentType: res.headers.get("content-type") ?? "" };
}

describe("metrics", () => {
  let mesh: TestMesh;
  let identityMesh: IdentityMesh;

  before(async () => {
    mesh = await startMesh({ tenancy: tenancyModule, identity: identityModule });
    identityMesh = { tenancy: mesh.tenancy, identity: mesh.identity, tenancyOps: clientFor(TenancyService, mesh.tenancy.baseUrl, bootstrapToken), stop: async () => undefined };
  });

  after(async () => {
    await mesh?.stop();
  });

  test("tenancy's /metrics counts each RPC by method and code, with a latency histogram and the service label", async () => {
    const ops = clientFor(TenancyService, mesh.tenancy.baseUrl, bootstrapToken);
    const handled = { grpc_service: "bulwark.tenancy.v1.TenancyService", grpc_method: "GetTenant" };
    const before = (await scrape(mesh.tenancy)).samples;
    const beforeNotFound = value(before, "bulwark_rpc_server_handled_total", { ...handled, grpc_code: "NotFound" }) ?? 0;
    const beforeOk = value(before, "bulwark_rpc_server_handled_total", { ...handled, grpc_code: "OK" }) ?? 0;
    await expectCode(ops.getTenant({ tenantId: "ten_00000000000000000000000000" }), Code.NotFound);
    const tenant = await tenantWithSlug(identityMesh);
    await ops.getTenant({ tenantId: tenant.id });
    await ops.getTenant({ tenantId: tenant.id });

    const { samples, contentType } = await scrape(mesh.tenancy);
    assert.match(contentType, /^application\/openmetrics-text; version=1\.0\.0/);
    const plain = await scrape(mesh.tenancy, undefined, "*/*");
    assert.match(plain.contentType, /^text\/plain; version=0\.0\.4/, "a client that does not ask for OpenMetrics gets the Prometheus text format");
    assert.equal(value(plain.samples, "bulwark_rpc_server_handled_total", { ...handled, grpc_code: "NotFound" }), beforeNotFound + 1);
    assert.equal(value(samples, "bulwark_rpc_server_handled_total", { ...handled, grpc_code: "NotFound" }), beforeNotFound + 1);
    assert.equal(value(samples, "bulwark_rpc_server_handled_total", { ...handled, grpc_code: "OK" }), beforeOk + 2);
    assert.ok((value(samples, "bulwark_rpc_server_handled_total", { grpc_method: "CreateTenant", grpc_code: "OK" }) ?? 0) >= 1);
    assert.equal(value(samples, "bulwark_rpc_server_handling_seconds_count", handled), beforeNotFound + beforeOk + 3);
    assert.equal(value(samples, "bulwark_rpc_server_handling_seconds_bucket", { ...handled, le: "+Inf" }), beforeNotFound + beforeOk + 3);
    assert.ok(value(samples, "bulwark_rpc_server_handling_seconds_bucket", { ...handled, le: "0.1" }) !== undefined);
    assert.ok((value(samples, "bulwark_cache_lookups_total", { cache: "tenant", result: "miss" }) ?? 0) >= 1);
    assert.ok(samples.every((s) => s.labels["service"] === "tenancy"), "every series carries service=tenancy");
    // A repeated read is answered from the tenant cache (once the creation's own eviction has passed).
    await eventually(async () => {
      await ops.getTenant({ tenantId: tenant.id });
      return (value((await scrape(mesh.tenancy)).samples, "bulwark_cache_lookups_total", { cache: "tenant", result: "hit" }) ?? 0) >= 1;
    });
  });

  test("tenancy exposes its outbox backlog, consumer lag, parked events, pool usage, relay and scheduler series", async () => {
    const { samples } = await scrape(mesh.tenancy);
    assert.ok(value(samples, "bulwark_outbox_unsent_events") !== undefined);
    assert.ok((value(samples, "bulwark_outbox_oldest_unsent_age_seconds") ?? -1) >= 0);
    for (const name of ["bulwark_consumer_pending_messages", "bulwark_consumer_ack_pending_messages", "bulwark_consumer_redelivered_messages"]) {
      assert.ok(value(samples, name, { durable: "tenancy_tenant_status" }) !== undefined, name);
    }
    assert.equal(value(samples, "bulwark_events_parked", { consumer: "tenancy_tenant_status" }), 0);
    assert.equal(value(samples, "bulwark_db_pool_connections", { state: "max" }), 4);
    for (const state of ["used", "free", "pending_acquires", "pending_creates"]) assert.ok(value(samples, "bulwark_db_pool_connections", { state }) !== undefined, state);
    // Events were written by the first test: the relay published them.
    await eventually(async () => (value((await scrape(mesh.tenancy)).samples, "bulwark_outbox_relay_published_events_total") ?? 0) >= 1);
    assert.ok(value(samples, "bulwark_outbox_relay_failed_batches_total") !== undefined);
    await eventually(async () => value((await scrape(mesh.tenancy)).samples, "bulwark_scheduler_runs_total", { job: "scheduler_history", outcome: "succeeded" }) === 1);
    assert.ok(value(samples, "process_cpu_seconds_total") !== undefined, "the process's default metrics are there too");
  });

  test("identity exposes its RED counters, argon2 queue depth, token cache and housekeeping runs", async () => {
    const tenant = await tenantWithSlug(identityMesh);
    const user = await createUser(identityMesh, tenant);
    const tokens = await signIn(identityMesh, user);
    // tenancy verifies identity's token twice: the second time from its verifier's cache.
    const asUser = clientFor(TenancyService, mesh.tenancy.baseUrl, tokens.accessToken);
    await asUser.getTenant({ tenantId: tenant.id });
    await asUser.getTenant({ tenantId: tenant.id });
    const tenancySamples = (await scrape(mesh.tenancy)).samples;
    assert.ok((value(tenancySamples, "bulwark_cache_lookups_total", { cache: "access_token", result: "hit" }) ?? 0) >= 1);
    assert.ok((value(tenancySamples, "bulwark_cache_lookups_total", { cache: "access_token", result: "miss" }) ?? 0) >= 1);

    await eventually(async () => value((await scrape(mesh.identity)).samples, "bulwark_scheduler_runs_total", { job: "housekeeping", outcome: "succeeded" }) === 1);
    const { samples } = await scrape(mesh.identity);
    assert.equal(value(samples, "bulwark_rpc_server_handled_total", { grpc_service: "bulwark.identity.v1.AuthService", grpc_method: "SignIn", grpc_code: "OK" }), 1);
    assert.equal(value(samples, "bulwark_identity_argon2_in_flight"), 0, "no hash is running between calls");
    assert.ok(value(samples, "bulwark_scheduler_run_duration_seconds_count", { job: "housekeeping" }) === 1);
    assert.ok(value(samples, "bulwark_outbox_unsent_events") !== undefined);
    assert.ok(value(samples, "bulwark_db_pool_connections", { state: "used" }) !== undefined);
    assert.ok(samples.some((s) => s.name === "bulwark_consumer_pending_messages"), "identity's consumers report their lag");
    assert.ok(samples.every((s) => s.labels["service"] === "identity"), "every series carries service=identity");
  });

  test("with METRICS_PORT set, metrics move to their own port and leave the service's port", async () => {
    const svc = await startTestService(tenancyModule, { env: { METRICS_PORT: "0" } });
    try {
      assert.ok(svc.running.metricsPort !== undefined && svc.running.metricsPort !== svc.running.port);
      assert.equal((await fetch(`${svc.baseUrl}/metrics`)).status, 404);
      const { samples } = await scrape(svc, `http://127.0.0.1:${svc.running.metricsPort}/metrics`);
      assert.ok(value(samples, "bulwark_outbox_unsent_events") !== undefined);
      assert.equal((await fetch(`http://127.0.0.1:${svc.running.metricsPort}/anything-else`)).status, 404);
    } finally {
      await svc.stop();
    }
  });
});
