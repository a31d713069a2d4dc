#!/usr/bin/env node
/**
 * `bulwark-audit`: a tenant's audit trail from a shell, online (export,
 * checkpoint, verifier key: over the service's gRPC API with a credential)
 * and offline (verify: nothing but the export file and the verifier key).
 *
 *   bulwark-audit verifier-key > audit.vkey            # once; keep it (trust on first use)
 *   bulwark-audit checkpoint --refresh > cp-2026-12.txt  # keep checkpoints to check later exports against
 *   bulwark-audit export --output trail.ndjson         # NDJSON, with each leaf's inclusion proof
 *   bulwark-audit export --format csv --output trail.csv
 *   bulwark-audit verify trail.ndjson --verifier-key @audit.vkey --previous-checkpoint cp-2026-12.txt
 *
 * Online commands read the credential (an access token or an API key with
 * audit.records.export / audit.records.verify) from BULWARK_TOKEN, never
 * from the command line; the service from --url or BULWARK_AUDIT_URL
 * (default http://127.0.0.1:50054); operators name the tenant with
 * --tenant. Progress bars go to standard error.
 *
 * `verify` recomputes every leaf hash and the root, checks the checkpoint's
 * signature with the verifier key, each leaf's inclusion proof, and that an
 * earlier checkpoint is a prefix of this log; it names the first entry that
 * does not match (edited, deleted, moved).
 *
 * Exit codes: 0 done (verify: the export verifies), 1 failed (verify: it
 * does not; the service refused), 2 usage error.
 */
import { createReadStream, createWriteStream, existsSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { finished } from "node:stream/promises";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuditLogService } from "@bulwark/contracts";
import { exportEntries, type ExportFormat } from "./export/export.js";
import { verifyExport, type VerifyReport } from "./export/verify.js";

const usage = `usage:
  bulwark-audit export [--output FILE] [--format ndjson|csv] [--no-proofs] [--tenant ID] [--url URL]
  bulwark-audit checkpoint [--refresh] [--tenant ID] [--url URL]
  bulwark-audit verifier-key [--tenant ID] [--url URL]
  bulwark-audit verify FILE --verifier-key KEY|@FILE [--previous-checkpoint FILE] [--origin ORIGIN] [--json]
  (online commands: credential in BULWARK_TOKEN, service in --url or BULWARK_AUDIT_URL)`;

class UsageError extends Error {
  override name = "UsageError";
}

function client(url: string | undefined) {
  const token = process.env["BULWARK_TOKEN"];
  if (!token) throw new UsageError("BULWARK_TOKEN must hold an access token or an API key");
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const baseUrl = url ?? process.env["BULWARK_AUDIT_URL"] ?? "http://127.0.0.1:50054";
  return createClient(AuditLogService, createGrpcTransport({ baseUrl, interceptors: [auth] }));
}

function progressBar(label: string) {
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {value}/{total} ({percentage}%)`, hideCursor: true, noTTYOutput: true, notTTYSchedule: 1000 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done: number, total: number) {
      if (!started) {
        bar.start(total, done);
        started = true;
      } else bar.update(done);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

const online = { url: { type: "string" }, tenant: { type: "string" } } as const;

async function exportCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { ...online, output: { type: "string", short: "o" }, format: { type: "string" }, "no-proofs": { type: "boolean" } }, strict: true });
  const format = (values.format ?? "ndjson") as ExportFormat;
  if (format !== "ndjson" && format !== "csv") throw new UsageError("--format is ndjson or csv");
  const out = values.output && values.output !== "-" ? createWriteStream(values.output) : process.stdout;
  const bar = progressBar("exporting entries");
  try {
    const { entries } = await exportEntries(client(values.url), {
      format,
      includeProofs: format === "ndjson" && !values["no-proofs"],
      out,
      onProgress: (d, t) => bar.update(d, t),
      ...(values.tenant ? { tenantId: values.tenant } : {}),
    });
    bar.stop();
    process.stderr.write(`${entries} entries exported${values.output ? ` to ${values.output}` : ""}\n`);
  } finally {
    bar.stop();
    if (out !== process.stdout) {
      out.end();
      await finished(out);
    }
  }
}

async function checkpointCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { ...online, refresh: { type: "boolean" } }, strict: true });
  const res = await client(values.url).getCheckpoint({ tenantId: values.tenant ?? "", refresh: values.refresh ?? false });
  process.stdout.write(res.checkpoint);
}

async function verifierKeyCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: online, strict: true });
  const res = await client(values.url).getVerifierKey({ tenantId: values.tenant ?? "" });
  process.stdout.write(`${res.verifierKey}\n`);
}

function readArgFile(value: string, what: string): string {
  const path = value.startsWith("@") ? value.slice(1) : value;
  if (value.startsWith("@") || existsSync(path)) {
    try {
      return readFileSync(path, "utf8");
    } catch {
      throw new UsageError(`cannot read ${what} file ${path}`);
    }
  }
  return value;
}

function printReport(r: VerifyReport): void {
  const w = (s: string): void => void process.stdout.write(`${s}\n`);
  if (r.origin !== undefined) w(`log ${r.origin}: checkpoint size ${r.size}, root ${r.rootHash}`);
  w(`${r.entries} entries read`);
  if (r.firstMismatch) {
    const m = r.firstMismatch;
    w(`FIRST MISMATCH: entry ${m.leafIndex}${m.entryId ? ` (${m.entryId})` : ""} at line ${m.line}: ${m.reason}`);
    if (m.description) w(`  it reads: ${m.description}`);
    for (const o of r.mismatches.slice(1)) w(`  also entry ${o.leafIndex}${o.entryId ? ` (${o.entryId})` : ""}: ${o.reason}`);
  }
  for (const p of r.problems) w(`PROBLEM: ${p}`);
  for (const n of r.notes) w(`note: ${n}`);
  if (r.consistentWithPrevious) w("consistent with the earlier checkpoint");
  w(r.ok ? "OK: every entry matches the signed checkpoint" : "FAILED: the export does not match the signed checkpoint");
}

async function verifyCommand(args: string[]): Promise<boolean> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { "verifier-key": { type: "string" }, "previous-checkpoint": { type: "string" }, origin: { type: "string" }, json: { type: "boolean" } },
    strict: true,
  });
  if (positionals.length !== 1) throw new UsageError("verify takes one export file");
  if (!values["verifier-key"]) throw new UsageError("--verifier-key is required (the key itself, or @FILE)");
  const file = positionals[0]!;
  if (!existsSync(file)) throw new UsageError(`no such file ${file}`);
  const verifierKey = readArgFile(values["verifier-key"], "verifier key").trim();
  const previous = values["previous-checkpoint"] ? readArgFile(`@${values["previous-checkpoint"]}`, "checkpoint") : undefined;
  const bar = progressBar("verifying entries");
  const lines = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
  let report: VerifyReport;
  try {
    report = await verifyExport(lines, {
      verifierKey,
      onEntry: (d, t) => bar.update(d, t),
      ...(previous !== undefined ? { previousCheckpoint: previous } : {}),
      ...(values.origin ? { origin: values.origin } : {}),
    });
  } finally {
    bar.stop();
  }
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else printReport(report);
  return report.ok;
}

async function run(argv: string[]): Promise<number> {
  // `bulwark-audit audit export …` reads as `bulwark audit export …`.
  const [command, ...rest] = argv[0] === "audit" ? argv.slice(1) : argv;
  switch (command) {
    case "export":
      await exportCommand(rest);
      return 0;
    case "checkpoint":
      await checkpointCommand(rest);
      return 0;
    case "verifier-key":
      await verifierKeyCommand(rest);
      return 0;
    case "verify":
      return (await verifyCommand(rest)) ? 0 : 1;
    default:
      throw new UsageError(`unknown command ${command ?? "(none)"}`);
  }
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError || (err instanceof Error && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))) {
    process.stderr.write(`bulwark-audit: ${err.message}\n${usage}\n`);
    process.exitCode = 2;
  } else if (err instanceof ConnectError) {
    process.stderr.write(`bulwark-audit: the audit service refused: ${Code[err.code]}: ${err.rawMessage}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`bulwark-audit: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
