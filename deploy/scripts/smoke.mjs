#!/usr/bin/env node
/**
 * Smoke test of one running Bulwark service: real RPCs over HTTP/2 cleartext
 * (h2c), as the Helm test hook and an operator after a deploy would make them.
 *
 *   node deploy/scripts/smoke.mjs <baseUrl> [options]
 *   node deploy/scripts/smoke.mjs http://t-bulwark-tenancy:50051
 *
 * Options (each also accepts `--name value`):
 *   --health-service=NAME  name passed to grpc.health.v1.Health/Check
 *                          (default bulwark.tenancy.v1.TenancyService;
 *                          an empty value asks for the overall status)
 *   --rpc=resolve-tenant|none
 *                          the RPC after the health check (default
 *                          resolve-tenant: ResolveTenant of a slug that does
 *                          not exist, which must answer NOT_FOUND)
 *   --protocol=connect|grpc|grpcweb
 *                          wire protocol (default connect)
 *   --timeout-ms=N         deadline of each call (default 5000)
 *   --attempts=N           tries per call while the service answers
 *                          UNAVAILABLE or DEADLINE_EXCEEDED (default 5)
 *
 * Exit code 0 when every check passed, 1 when one failed, 2 on bad usage.
 * The NOT_FOUND of ResolveTenant is the proof that the request went through
 * the router, the authz interceptor (the RPC is public), validation and the
 * database, and came back as a typed Connect error: any other answer,
 * success included, fails the test.
 *
 * Runs from the repository root of the built image (npm workspaces put
 * @bulwark/contracts and @connectrpc/* in its node_modules).
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  Http2SessionManager,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { TenancyService, health } from "@bulwark/contracts";

const USAGE =
  "usage: node deploy/scripts/smoke.mjs <baseUrl> [--health-service=NAME] " +
  "[--rpc=resolve-tenant|none] [--protocol=connect|grpc|grpcweb] " +
  "[--timeout-ms=N] [--attempts=N]";

/** Codes worth another try: the pod may still be joining the endpoints. */
const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded]);

/**
 * Parses and checks the command line; exits 2 naming the bad argument, so a
 * misconfigured test hook says why instead of failing an RPC obscurely.
 */
function readOptions(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        "health-service": { type: "string", default: "bulwark.tenancy.v1.TenancyService" },
        rpc: { type: "string", default: "resolve-tenant" },
        protocol: { type: "string", default: "connect" },
        "timeout-ms": { type: "string", default: "5000" },
        attempts: { type: "string", default: "5" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    usageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (positionals.length !== 1) usageError("exactly one <baseUrl> is required");
  let url;
  try {
    url = new URL(positionals[0]);
  } catch {
    usageError(`<baseUrl> is not a URL: ${positionals[0]}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    usageError(`<baseUrl> must be http:// (h2c) or https://, got ${url.protocol}`);
  }
  if (!["resolve-tenant", "none"].includes(values.rpc)) usageError(`--rpc: unknown ${values.rpc}`);
  if (!["connect", "grpc", "grpcweb"].includes(values.protocol)) {
    usageError(`--protocol: unknown ${values.protocol}`);
  }
  const timeoutMs = Number(values["timeout-ms"]);
  const attempts = Number(values.attempts);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) usageError("--timeout-ms must be a positive integer");
  if (!Number.isInteger(attempts) || attempts <= 0) usageError("--attempts must be a positive integer");
  return {
    baseUrl: positionals[0].replace(/\/+$/, ""),
    healthService: values["health-service"],
    rpc: values.rpc,
    protocol: values.protocol,
    timeoutMs,
    attempts,
  };
}

function usageError(message) {
  console.error(`smoke: ${message}\n${USAGE}`);
  process.exit(2);
}

/**
 * A transport on one shared HTTP/2 session, so that closing the session at
 * the end lets the process exit on its own.
 */
function createTransport({ baseUrl, protocol }, sessionManager) {
  switch (protocol) {
    case "grpc":
      // connect-node 2.x: gRPC always runs over HTTP/2; no httpVersion option.
      return createGrpcTransport({ baseUrl, sessionManager });
    case "grpcweb":
      return createGrpcWebTransport({ baseUrl, httpVersion: "2", sessionManager });
    default:
      return createConnectTransport({ baseUrl, httpVersion: "2", sessionManager });
  }
}

/** Runs `call` up to `attempts` times while it fails with a retryable code. */
async function withRetries(label, attempts, call) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const ce = ConnectError.from(err);
      if (attempt >= attempts || !RETRYABLE.has(ce.code)) throw ce;
      const delayMs = Math.min(250 * 2 ** (attempt - 1), 4000);
      console.log(`  ${label}: ${Code[ce.code]} (${ce.rawMessage}), retrying in ${delayMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

/** grpc.health.v1.Health/Check must answer SERVING. */
async function checkHealth(transport, opts) {
  const client = createClient(health.Health, transport);
  const label = `grpc.health.v1.Health/Check(${JSON.stringify(opts.healthService)})`;
  const res = await withRetries(label, opts.attempts, () =>
    client.check({ service: opts.healthService }, { timeoutMs: opts.timeoutMs }),
  );
  const status = health.HealthCheckResponse_ServingStatus[res.status] ?? String(res.status);
  if (res.status !== health.HealthCheckResponse_ServingStatus.SERVING) {
    throw new Error(`${label} answered ${status}, want SERVING`);
  }
  console.log(`ok  ${label} = ${status}`);
}

/**
 * bulwark.tenancy.v1.TenancyService/ResolveTenant of a random, well-formed
 * slug that no tenant has: NOT_FOUND is success.
 */
async function checkResolveTenant(transport, opts) {
  const client = createClient(TenancyService, transport);
  const slug = `smoke-${randomBytes(6).toString("hex")}`;
  const label = `bulwark.tenancy.v1.TenancyService/ResolveTenant({slug: "${slug}"})`;
  try {
    const res = await withRetries(label, opts.attempts, () =>
      client.resolveTenant({ slug }, { timeoutMs: opts.timeoutMs }),
    );
    throw new Error(`${label} answered a tenant (${res.tenantId}), want NOT_FOUND`);
  } catch (err) {
    if (!(err instanceof ConnectError)) throw err;
    if (err.code !== Code.NotFound) {
      throw new Error(`${label} answered ${Code[err.code]} (${err.rawMessage}), want NOT_FOUND`, { cause: err });
    }
  }
  console.log(`ok  ${label} = NOT_FOUND (expected)`);
}

async function main() {
  const opts = readOptions(process.argv.slice(2));
  console.log(`smoke: ${opts.baseUrl} over ${opts.protocol} (HTTP/2)`);
  const sessionManager = new Http2SessionManager(opts.baseUrl);
  const transport = createTransport(opts, sessionManager);
  try {
    await checkHealth(transport, opts);
    if (opts.rpc === "resolve-tenant") await checkResolveTenant(transport, opts);
    console.log("smoke: passed");
  } catch (err) {
    const message = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : String(err?.message ?? err);
    console.error(`FAIL ${message}`);
    process.exitCode = 1;
  } finally {
    sessionManager.abort();
  }
}

await main();
