import { StorageType, type JetStreamManager, type StreamInfo } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

/** A service's stream: its name and the subjects it captures. */
export interface StreamSpec {
  readonly name: string;
  readonly subjects: readonly string[];
  /** How long JetStream remembers a `Nats-Msg-Id` to drop a republish; at least 2 minutes. */
  readonly duplicateWindowMs?: number;
  /** Discard messages older than this; unlimited when absent. */
  readonly maxAgeMs?: number;
  /** Copies kept by a NATS cluster (1 on a single server; 3 so losing a node loses nothing). */
  readonly replicas?: number;
}

const minDuplicateWindowMs = 120_000;
/** JetStream's error code when another process created the stream first. */
const streamNameInUse = 10058;

/**
 * Creates the stream or brings an existing one in line with the spec, so
 * services can call it at every start. File storage, because events must
 * survive a NATS restart; the duplicate window is what lets the relay
 * republish after a crash without consumers seeing the event twice.
 */
export async function ensureStream(jsm: JetStreamManager, spec: StreamSpec): Promise<StreamInfo> {
  const config = {
    subjects: [...spec.subjects],
    duplicate_window: nanos(Math.max(spec.duplicateWindowMs ?? minDuplicateWindowMs, minDuplicateWindowMs)),
    ...(spec.maxAgeMs === undefined ? {} : { max_age: nanos(spec.maxAgeMs) }),
    num_replicas: spec.replicas ?? 1,
  };
  const existing = await jsm.streams.info(spec.name).catch((err: unknown) => {
    if ((err as { code?: unknown }).code === 10059 || (err as Error).name === "StreamNotFoundError") return undefined;
    throw err;
  });
  if (existing === undefined) {
    try {
      return await jsm.streams.add({ name: spec.name, storage: StorageType.File, ...config });
    } catch (err) {
      if ((err as { code?: unknown }).code !== streamNameInUse) throw err;
    }
  }
  return jsm.streams.update(spec.name, config);
}
