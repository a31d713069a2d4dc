/**
 * C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the body of a signed tree
 * head, as github.com/transparency-dev/formats/log parses it:
 *
 *     <origin>\n<decimal tree size>\n<base64 root hash>\n[<extension line>\n]*
 *
 * wrapped in a signed note (see note.ts) whose signer name is usually the
 * origin.
 */
import { HASH_SIZE } from "./hash.js";
import { NoteError, openNote, signNote, type Note, type NoteSigner, type NoteVerifier } from "./note.js";

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Uint8Array;
  /** Optional extension lines, without their newline. */
  readonly extensions?: readonly string[];
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

export function formatCheckpoint(c: Checkpoint): string {
  if (!c.origin || c.origin.includes("\n")) throw new CheckpointError("origin must be one non-empty line");
  if (!Number.isSafeInteger(c.size) || c.size < 0) throw new CheckpointError("size must be a non-negative integer");
  if (c.rootHash.length !== HASH_SIZE) throw new CheckpointError("root hash must be 32 bytes");
  const ext = c.extensions ?? [];
  for (const e of ext) if (!e || e.includes("\n")) throw new CheckpointError("extension lines must be non-empty single lines");
  return `${c.origin}\n${c.size}\n${Buffer.from(c.rootHash).toString("base64")}\n${ext.map((e) => `${e}\n`).join("")}`;
}

export function parseCheckpoint(body: string): Checkpoint {
  if (!body.endsWith("\n")) throw new CheckpointError("checkpoint must end with a newline");
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3) throw new CheckpointError("checkpoint needs origin, size and root hash lines");
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  if (!origin) throw new CheckpointError("empty origin");
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine)) throw new CheckpointError("size is not a decimal number");
  const size = Number(sizeLine);
  if (!Number.isSafeInteger(size)) throw new CheckpointError("size is too large");
  const root = Buffer.from(rootLine, "base64");
  if (root.length !== HASH_SIZE || root.toString("base64") !== rootLine) throw new CheckpointError("root hash is not base64 of 32 bytes");
  for (const e of extensions) if (!e) throw new CheckpointError("empty extension line");
  return { origin, size, rootHash: new Uint8Array(root), extensions };
}

/** Formats and signs a checkpoint as a signed note. */
export function signCheckpoint(c: Checkpoint, ...signers: NoteSigner[]): Promise<string> {
  return signNote(formatCheckpoint(c), ...signers);
}

export interface VerifiedCheckpoint extends Checkpoint {
  readonly note: Note;
}

/**
 * Opens a signed checkpoint: the signature of `verifier` must be present and
 * valid, and, when given, the origin must be `expectedOrigin`.
 */
export function openCheckpoint(signed: string | Uint8Array, verifier: NoteVerifier, expectedOrigin?: string): VerifiedCheckpoint {
  const note = openNote(signed, [verifier]);
  const c = parseCheckpoint(note.text);
  if (expectedOrigin !== undefined && c.origin !== expectedOrigin) throw new CheckpointError(`checkpoint origin is ${c.origin}, not ${expectedOrigin}`);
  return { ...c, note };
}

export { NoteError };
