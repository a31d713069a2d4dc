/**
 * `bulwark-audit export`: streams ExportEntries into NDJSON (one
 * `ExportEntriesResponse` a line in proto JSON: the checkpoint first, then
 * each leaf; what `bulwark-audit verify` checks offline) or CSV (one row per
 * entry for people; personal data stays sealed and is left out).
 */
import { once } from "node:events";
import type { Writable } from "node:stream";
import { fromBinary, toJsonString } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { ActorType, AuditEntrySchema, ExportEntriesResponseSchema, Outcome, type AuditEntry, type AuditLogService, type FieldValue } from "@bulwark/contracts";
import { parseCheckpoint } from "@bulwark/tlog";

export type ExportFormat = "ndjson" | "csv";

export interface ExportOptions {
  readonly tenantId?: string;
  readonly format: ExportFormat;
  readonly includeProofs: boolean;
  readonly out: Writable;
  /** Called with the checkpoint's size first, then after each entry. */
  readonly onProgress?: (done: number, total: number) => void;
}

export const csvColumns = [
  "leaf_index",
  "entry_id",
  "recorded_at",
  "occurred_at",
  "actor_type",
  "actor_id",
  "actor_roles",
  "action",
  "resource_type",
  "resource_id",
  "outcome",
  "count",
  "changed_fields",
  "source",
  "request_id",
  "trace_id",
  "platform",
  "platform_reason",
] as const;

function csvCell(v: string): string {
  // Quote always; neutralise spreadsheet formulas (=, +, -, @ at the start).
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return `"${safe.replaceAll('"', '""')}"`;
}

const iso = (t: AuditEntry["recordedAt"]): string => (t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString() : "");

function valueText(v: FieldValue | undefined): string {
  switch (v?.kind.case) {
    case "plain":
      return v.kind.value;
    case "keyedHash":
      return v.kind.value;
    case "sealed":
      return "(sealed)";
    case "redacted":
      return "(redacted)";
    default:
      return "";
  }
}

export function csvRow(e: AuditEntry): string {
  const cells = [
    e.leafIndex.toString(),
    e.entryId,
    iso(e.recordedAt),
    iso(e.occurredAt),
    ActorType[e.actor?.type ?? ActorType.UNSPECIFIED] ?? "",
    e.actor?.id ?? "",
    (e.actor?.roles ?? []).join(" "),
    e.action,
    e.resource?.type ?? "",
    e.resource?.id ?? "",
    Outcome[e.outcome] ?? "",
    String(e.count),
    e.changedFields.map((f) => `${f.name}: ${valueText(f.oldValue)} -> ${valueText(f.newValue)}`).join("; "),
    e.source,
    e.requestId,
    e.traceId,
    e.platform ? "true" : "false",
    e.platformReason,
  ];
  return `${cells.map(csvCell).join(",")}\r\n`;
}

async function write(out: Writable, s: string): Promise<void> {
  if (!out.write(s)) await once(out, "drain");
}

/** Streams the export to `out`; returns the number of entries and the checkpoint. */
export async function exportEntries(client: Client<typeof AuditLogService>, opts: ExportOptions): Promise<{ entries: number; checkpoint: string }> {
  let checkpoint: string | undefined;
  let total = 0;
  let entries = 0;
  if (opts.format === "csv") await write(opts.out, `${csvColumns.join(",")}\r\n`);
  for await (const msg of client.exportEntries({ tenantId: opts.tenantId ?? "", includeProofs: opts.includeProofs })) {
    if (checkpoint === undefined) {
      if (msg.item.case !== "checkpoint") throw new Error("the export stream does not start with a checkpoint");
      checkpoint = msg.item.value;
      total = parseCheckpoint(checkpoint.slice(0, checkpoint.indexOf("\n\n") + 1)).size;
      opts.onProgress?.(0, total);
      if (opts.format === "ndjson") await write(opts.out, `${toJsonString(ExportEntriesResponseSchema, msg)}\n`);
      continue;
    }
    if (msg.item.case !== "entry") throw new Error("unexpected message in the export stream");
    if (opts.format === "ndjson") await write(opts.out, `${toJsonString(ExportEntriesResponseSchema, msg)}\n`);
    else await write(opts.out, csvRow(fromBinary(AuditEntrySchema, msg.item.value.leaf)));
    entries++;
    opts.onProgress?.(entries, total);
  }
  if (checkpoint === undefined) throw new Error("the export stream was empty");
  return { entries, checkpoint };
}
