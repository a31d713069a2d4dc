/**
 * Process lifecycle of a real service process: SIGTERM drains in-flight
 * calls and exits 0 within the grace period with the port closed; a bad
 * environment stops start-up with exit 1 and a message naming the variable.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Region, TenancyService } from "@bulwark/contracts";
import { tenancyModule } from "@bulwark/tenancy";
import { bootstrapToken, clientFor, startTestService, uniqueSlug, type Started } from "../support/harness.js";
import { deadline, envFor, freePort, portOpen, sleep, spawnService, type ChildService } from "./support-e2e.js";

const graceMs = 2000;

function assertNoStack(output: string): void {
  assert.doesNotMatch(output, /\n\s+at .+\(?.*:\d+:\d+\)?/, `a stack trace was printed:\n${output}`);
  assert.doesNotMatch(output, /node:internal|file:\/\//, `a stack trace was printed:\n${output}`);
}

describe("process lifecycle", () => {
  let provisioned: Started | undefined;
  const children: ChildService[] = [];

  before(async () => {
    // Migrate (and create the stream) once, then free the schema for the child processes.
    provisioned = await startTestService(tenancyModule, { keep: true });
    await provisioned.running.stop();
  });

  after(async () => {
    for (const c of children) await c.kill();
    // keep: true stops without dropping; drop explicitly.
    const { dropTestService } = await import("../support/harness.js");
    if (provisioned !== undefined) await dropTestService(provisioned.config.DATABASE_SCHEMA, provisioned.prefix, "tenancy");
  });

  function spawnWith(overrides: Record<string, string>): ChildService {
    const child = spawnService(envFor(provisioned!.config, { SHUTDOWN_GRACE_MS: String(graceMs), ...overrides }));
    children.push(child);
    return child;
  }

  test("SIGTERM lets in-flight calls finish, exits 0 within the grace period and closes the port", async (t) => {
    const port = await freePort();
    const child = spawnWith({ PORT: String(port) });
    await child.ready(port, { logged: true });
    const ops = clientFor(TenancyService, `http://127.0.0.1:${port}`, bootstrapToken);
    await ops.createTenant({ slug: uniqueSlug("warm"), displayName: "Warm", region: Region.EU }); // connection up

    // A steady stream of calls, plus a burst that is still queued on the
    // database pool when SIGTERM arrives.
    const calls: Promise<{ ok: boolean; at: number; err?: string }>[] = [];
    const issue = (): void => {
      calls.push(
        ops.createTenant({ slug: uniqueSlug("drain"), displayName: "Drain", region: Region.EU }).then(
          () => ({ ok: true, at: Date.now() }),
          (err: unknown) => ({ ok: false, at: Date.now(), err: String(err) }),
        ),
      );
    };
    for (let i = 0; i < 10; i++) {
      issue();
      await sleep(15);
    }
    for (let i = 0; i < 40; i++) issue();
    await sleep(5); // let the burst's frames reach the server
    const sigterm = Date.now();
    child.proc.kill("SIGTERM");
    const results = await Promise.all(calls);
    // Every call the server had taken completes. On a loaded machine some of the burst's frames can still be
    // in the client when the server's GOAWAY goes out: those streams are refused unstarted (REFUSED_STREAM,
    // which a client may retry elsewhere), never cut off half-done.
    const refused = results.filter((r) => !r.ok && /REFUSED_STREAM/.test(r.err ?? ""));
    const failed = results.filter((r) => !r.ok && !refused.includes(r));
    assert.deepEqual(failed, [], "every call the server took before SIGTERM completes");
    const afterSignal = results.filter((r) => r.ok && r.at > sigterm).length;
    assert.ok(refused.length < results.length, "the server took calls before SIGTERM");
    t.diagnostic(`${afterSignal} of ${results.length} calls completed after SIGTERM; ${refused.length} refused unstarted`);

    const exit = await Promise.race([child.exited, deadline(graceMs + 3000)]);
    assert.ok(exit !== undefined, `still running ${graceMs + 3000} ms after SIGTERM`);
    assert.deepEqual(exit, { code: 0, signal: null }, child.output());
    assert.ok(Date.now() - sigterm < graceMs + 3000);
    assert.equal(await portOpen(port), false, "the port is closed");
    assert.match(child.output(), /shutting down/);
    assert.match(child.output(), /"msg":"stopped"/);
    assertNoStack(child.stderr());
  });

  test("an idle service exits 0 promptly on SIGTERM, and on SIGINT", async () => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      const port = await freePort();
      const child = spawnWith({ PORT: String(port) });
      await child.ready(port, { logged: true });
      const t0 = Date.now();
      child.proc.kill(signal);
      const exit = await child.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, child.output());
      assert.ok(Date.now() - t0 < graceMs, `${signal}: took ${Date.now() - t0} ms`);
      assert.equal(await portOpen(port), false);
    }
  });

  test(
    "an idle HTTP/1.1 keep-alive connection (gRPC-Web, Connect) does not hold shutdown for the whole grace period",
    async () => {
      const port = await freePort();
      const child = spawnWith({ PORT: String(port) });
      await child.ready(port, { logged: true });
      await clientFor(TenancyService, `http://127.0.0.1:${port}`, undefined, "grpcweb").resolveTenant({ slug: uniqueSlug("none") }).catch(() => undefined);
      const t0 = Date.now();
      child.proc.kill("SIGTERM");
      const exit = await child.exited;
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(Date.now() - t0 < graceMs / 2, `shutdown took ${Date.now() - t0} ms with one idle gRPC-Web connection (grace ${graceMs} ms)`);
    },
  );

  test("a malformed environment variable stops start-up with exit 1 and a message naming it", async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: "abc" }, /PORT/],
      [{ NATS_URL: "http://x" }, /NATS_URL/],
      [{ DATABASE_URL: "mysql://nope" }, /DATABASE_URL/],
      [{ LOG_LEVEL: "loud" }, /LOG_LEVEL/],
      [{ NODE_ENV: "production", BULWARK_SERVICE_SECRET: "short" }, /BULWARK_SERVICE_SECRET/],
      [{ NODE_ENV: "production", BULWARK_BOOTSTRAP_TOKEN: "a-bootstrap-token-of-enough-length" }, /BULWARK_SERVICE_KEY/],
      [{ BULWARK_SERVICE_KEY: "not-a-key-but-long-enough-to-check-it-is-not-echoed" }, /BULWARK_SERVICE_KEY/],
      [{ BULWARK_SERVICE_PUBLIC_KEYS: "identity=not-a-public-key" }, /BULWARK_SERVICE_PUBLIC_KEYS/],
    ];
    await Promise.all(
      cases.map(async ([env, name]) => {
        const child = spawnWith({ PORT: "0", ...env });
        const exit = await child.exited;
        assert.deepEqual(exit, { code: 1, signal: null }, `${JSON.stringify(env)}: ${child.output()}`);
        assert.match(child.output(), name);
        assertNoStack(child.output());
        // Secrets and malformed values are never echoed (NODE_ENV's "production" may be named).
        for (const [key, value] of Object.entries(env)) if (key !== "NODE_ENV" && value.length > 8) assert.ok(!child.output().includes(value), `the value of ${key} is not echoed`);
      }),
    );
  });

  test("an unreachable dependency at start-up exits 1 naming it, without a stack", async () => {
    const deadPort = await freePort();
    const cases: [Record<string, string>, RegExp][] = [
      [{ NATS_URL: `nats://127.0.0.1:${deadPort}` }, /NATS/],
      [{ DATABASE_URL: provisioned!.config.DATABASE_URL.replace(/:\d+\//, `:${deadPort}/`) }, /Postgres|database/i],
    ];
    await Promise.all(
      cases.map(async ([env, name]) => {
        const child = spawnWith({ PORT: "0", ...env });
        const exit = await Promise.race([child.exited, deadline(15_000)]);
        assert.ok(exit !== undefined, `still running: ${child.output()}`);
        assert.deepEqual(exit, { code: 1, signal: null }, child.output());
        assert.match(child.output(), name);
        assertNoStack(child.output());
      }),
    );
  });
});
