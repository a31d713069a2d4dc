/**
 * `npm run bench`: every benchmark of the mesh, in one run, against the
 * baselines measured in that same run (these machines are noisy, so only
 * ratios within a run mean anything).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { PingRequestSchema } from "@bulwark/contracts";
import { bareGrpcJs, bulwarkStack, pingPath, plainConnectNode, type Target } from "./baselines.js";
import { benchSettings, drive, line } from "./drive.js";
import type { LoadResult } from "./load.js";

const ping = Buffer.from(toBinary(PingRequestSchema, create(PingRequestSchema, { payload: new Uint8Array(16) }))).toString("base64");

async function measure(name: string, start: () => Promise<Target>, path: string, request: string, metadata: Record<string, string> = {}): Promise<LoadResult> {
  const target = await start();
  try {
    const result = await drive({ target: target.address, path, request, metadata, ...benchSettings });
    console.log(line(name, result));
    return result;
  } finally {
    await target.close();
  }
}

console.log(`grpc-js client, ${benchSettings.concurrency} calls in flight, ${benchSettings.durationMs / 1000}s per row\n`);
const a = await measure("(a) bare @grpc/grpc-js server, no-op", bareGrpcJs, pingPath, ping);
const b = await measure("(b) Bulwark server stack, no-op (Ping)", bulwarkStack, pingPath, ping);
const ref = await measure("    connect-node adapter alone, no-op (ref.)", plainConnectNode, pingPath, ping);
console.log("");
console.log(`b/a = ${(b.rps / a.rps).toFixed(2)}   (connect-node alone / a = ${(ref.rps / a.rps).toFixed(2)})`);
