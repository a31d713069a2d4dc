/**
 * The independent verifier (test/go-verifier, Go's standard transparency-log
 * libraries): built once outside the repository, run with a JSON input.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const script = join(fileURLToPath(import.meta.url), "../../../go-verifier/build.sh");
let binary: string | undefined;

/** Path of the built Go verifier (builds it when missing). */
export function goVerifierBinary(): string {
  binary ??= execFileSync("bash", [script], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
  return binary;
}

export interface GoVerifierInput {
  verifierKey: string;
  origin?: string;
  checkpoint: string;
  leaves?: { index: number; leaf: Uint8Array; proof?: Uint8Array[] }[];
  allLeaves?: boolean;
  consistency?: ({ checkpoint: string; proof: Uint8Array[] } | { size: number; root: Uint8Array; proof: Uint8Array[] })[];
}

export interface GoVerifierResult {
  ok: boolean;
  /** Parsed summary on success. */
  summary?: { origin: string; size: number; root: string; inclusionChecked: number; rootRecomputed: boolean; consistencyChecked: number };
  /** The Go program's complaint on failure. */
  error?: string;
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");

export function runGoVerifier(input: GoVerifierInput): GoVerifierResult {
  const json = JSON.stringify({
    ...input,
    leaves: input.leaves?.map((l) => ({ index: l.index, leaf: b64(l.leaf), proof: (l.proof ?? []).map(b64) })),
    consistency: input.consistency?.map((c) => ("checkpoint" in c ? { checkpoint: c.checkpoint, proof: c.proof.map(b64) } : { size: c.size, root: b64(c.root), proof: c.proof.map(b64) })),
  });
  const r = spawnSync(goVerifierBinary(), ["-input", "-"], { input: json, encoding: "utf8" });
  if (r.status === 0) return { ok: true, summary: JSON.parse(r.stdout) as GoVerifierResult["summary"] };
  if (r.status === 1) return { ok: false, error: r.stderr.trim() };
  throw new Error(`go verifier failed to run (status ${r.status}): ${r.stderr}`);
}
