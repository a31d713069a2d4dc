/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, byte-compatible
 * with Go's golang.org/x/mod/sumdb/note:
 * - key hash (key id): the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), big-endian;
 * - verifier key: `<name>+<8 hex key hash>+<base64(0x01 || public key)>`;
 * - signer key: `PRIVATE+KEY+<name>+<8 hex key hash>+<base64(0x01 || seed)>`;
 * - a note: its text (ending in a newline), a blank line, then one line per
 *   signature: `— <name> <base64(key hash || signature)>` (U+2014 em dash).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

const ALG_ED25519 = 0x01;
const SIG_PREFIX = "\u2014 ";
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");
const MAX_SIGNATURES = 100;

export class NoteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NoteError";
  }
}

/** Non-empty, valid UTF-8, no Unicode white space, no '+'. */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && name.isWellFormed();
}

export function keyHash(name: string, keyWithAlg: Uint8Array): number {
  const d = createHash("sha256").update(name, "utf8").update(Buffer.from([0x0a])).update(keyWithAlg).digest();
  return d.readUInt32BE(0);
}

const hex8 = (n: number): string => n.toString(16).padStart(8, "0");

export interface NoteVerifier {
  readonly name: string;
  readonly keyHash: number;
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

export interface NoteSigner {
  readonly name: string;
  readonly keyHash: number;
  sign(message: Uint8Array): Promise<Uint8Array> | Uint8Array;
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
}

function privateKeyObject(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: "der", type: "pkcs8" });
}

function rawPublicKey(priv: KeyObject): Uint8Array {
  const der = createPublicKey(priv).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - 32));
}

function decodeBase64Strict(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return undefined;
  const b = Buffer.from(s, "base64");
  if (b.toString("base64") !== s) return undefined;
  return new Uint8Array(b);
}

/** Splits at the first `n` '+' (the base64 key itself may hold '+'), as Go's strings.Cut chain does. */
function cut(s: string, n: number): string[] {
  const out: string[] = [];
  let rest = s;
  for (let i = 0; i < n; i++) {
    const j = rest.indexOf("+");
    if (j < 0) {
      out.push(rest);
      rest = "";
    } else {
      out.push(rest.slice(0, j));
      rest = rest.slice(j + 1);
    }
  }
  out.push(rest);
  return out;
}

/** Parses a verifier key `<name>+<hash>+<base64 key>` (Ed25519 only). */
export function parseVerifierKey(vkey: string): NoteVerifier & { readonly publicKey: Uint8Array; readonly encoded: string } {
  const [name, hash16, key64] = cut(vkey, 2) as [string, string, string];
  const key = decodeBase64Strict(key64);
  if (!isValidKeyName(name) || !/^[0-9a-fA-F]{8}$/.test(hash16) || !key || key.length === 0) throw new NoteError("malformed verifier key");
  const hash = parseInt(hash16, 16);
  if (hash !== keyHash(name, key)) throw new NoteError("verifier key hash does not match the key");
  if (key[0] !== ALG_ED25519) throw new NoteError("unknown verifier key algorithm");
  if (key.length !== 33) throw new NoteError("malformed verifier key");
  const publicKey = key.slice(1);
  const pub = publicKeyObject(publicKey);
  return {
    name,
    keyHash: hash,
    publicKey,
    encoded: vkey,
    verify: (message, signature) => signature.length === 64 && verify(null, message, pub, signature),
  };
}

/** Parses a signer key `PRIVATE+KEY+<name>+<hash>+<base64 seed>` (Ed25519 only). */
export function parseSignerKey(skey: string): NoteSigner & { readonly verifierKey: string } {
  const [priv, keyWord, name, hash16, key64] = cut(skey, 4) as [string, string, string, string, string];
  if (priv !== "PRIVATE" || keyWord !== "KEY") throw new NoteError("malformed signer key");
  const key = decodeBase64Strict(key64);
  if (!isValidKeyName(name) || !/^[0-9a-fA-F]{8}$/.test(hash16) || !key || key.length !== 33 || key[0] !== ALG_ED25519) {
    throw new NoteError("malformed signer key");
  }
  return ed25519Signer(name, key.slice(1), parseInt(hash16, 16));
}

/** A signer from a raw 32-byte Ed25519 seed (e.g. unwrapped through the keys service). */
export function ed25519Signer(name: string, seed: Uint8Array, expectedHash?: number): NoteSigner & { readonly verifierKey: string } {
  if (!isValidKeyName(name)) throw new NoteError("invalid key name");
  if (seed.length !== 32) throw new NoteError("an Ed25519 seed is 32 bytes");
  const priv = privateKeyObject(seed);
  const pubWithAlg = new Uint8Array([ALG_ED25519, ...rawPublicKey(priv)]);
  const hash = keyHash(name, pubWithAlg);
  if (expectedHash !== undefined && expectedHash !== hash) throw new NoteError("signer key hash does not match the key");
  return {
    name,
    keyHash: hash,
    verifierKey: `${name}+${hex8(hash)}+${Buffer.from(pubWithAlg).toString("base64")}`,
    sign: (message) => new Uint8Array(sign(null, message, priv)),
  };
}

/** A fresh Ed25519 key pair in note formats. */
export function generateNoteKey(name: string): { signerKey: string; verifierKey: string; seed: Uint8Array } {
  if (!isValidKeyName(name)) throw new NoteError("invalid key name");
  const { privateKey } = generateKeyPairSync("ed25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  const seed = new Uint8Array(der.subarray(der.length - 32));
  const s = ed25519Signer(name, seed);
  const hash = hex8(s.keyHash);
  return { signerKey: `PRIVATE+KEY+${name}+${hash}+${Buffer.from([ALG_ED25519, ...seed]).toString("base64")}`, verifierKey: s.verifierKey, seed };
}

export interface NoteSignature {
  readonly name: string;
  readonly keyHash: number;
  /** base64(key hash || signature), as on the line. */
  readonly base64: string;
}

export interface Note {
  /** The signed text, ending in a newline. */
  readonly text: string;
  /** Signatures that a known verifier checked. */
  readonly sigs: NoteSignature[];
  /** Signatures by keys not among the verifiers given. */
  readonly unverifiedSigs: NoteSignature[];
}

function checkText(text: string): void {
  if (!text.endsWith("\n")) throw new NoteError("malformed note: the text must end with a newline");
  if (text.includes("\n\n")) throw new NoteError("malformed note: the text must not contain a blank line");
  checkCharacters(text);
}

function checkCharacters(s: string): void {
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if ((c < 0x20 && c !== 0x0a) || (c >= 0xd800 && c <= 0xdfff)) throw new NoteError("malformed note: control character or invalid UTF-8");
  }
}

/** Signs a note's text with one or more signers: text, blank line, a signature line each. */
export async function signNote(text: string, ...signers: NoteSigner[]): Promise<string> {
  checkText(text);
  if (signers.length === 0) throw new NoteError("no signer");
  const msg = Buffer.from(text, "utf8");
  let out = `${text}\n`;
  for (const s of signers) {
    if (!isValidKeyName(s.name)) throw new NoteError("invalid signer name");
    const sig = await s.sign(msg);
    const id = Buffer.alloc(4);
    id.writeUInt32BE(s.keyHash >>> 0);
    out += `${SIG_PREFIX}${s.name} ${Buffer.concat([id, sig]).toString("base64")}\n`;
  }
  return out;
}

/**
 * Parses a signed note and checks the signatures of known verifiers, as Go's
 * note.Open does: a malformed note, or a bad signature by a known key, throws;
 * a note with no signature by a known key throws (UnverifiedNoteError).
 */
export class UnverifiedNoteError extends NoteError {
  constructor(readonly note: Note) {
    super("note has no verifiable signature");
    this.name = "UnverifiedNoteError";
  }
}

export function openNote(message: string | Uint8Array, verifiers: readonly NoteVerifier[]): Note {
  const bytes = typeof message === "string" ? Buffer.from(message, "utf8") : Buffer.from(message);
  const msg = bytes.toString("utf8");
  if (!Buffer.from(msg, "utf8").equals(bytes)) throw new NoteError("malformed note: invalid UTF-8");
  checkCharacters(msg);
  const split = msg.lastIndexOf("\n\n");
  if (split < 0) throw new NoteError("malformed note: no signature block");
  const text = msg.slice(0, split + 1);
  let sigs = msg.slice(split + 2);
  if (sigs.length === 0 || !sigs.endsWith("\n")) throw new NoteError("malformed note: signature block");
  const note: Note = { text, sigs: [], unverifiedSigs: [] };
  const seen = new Set<string>();
  const seenUnverified = new Set<string>();
  let count = 0;
  const textBytes = Buffer.from(text, "utf8");
  while (sigs.length > 0) {
    const i = sigs.indexOf("\n");
    let line = sigs.slice(0, i);
    sigs = sigs.slice(i + 1);
    if (!line.startsWith(SIG_PREFIX)) throw new NoteError("malformed note: signature line");
    line = line.slice(SIG_PREFIX.length);
    const sp = line.indexOf(" ");
    const name = sp < 0 ? line : line.slice(0, sp);
    const b64 = sp < 0 ? "" : line.slice(sp + 1);
    const raw = decodeBase64Strict(b64);
    if (!raw || !isValidKeyName(name) || b64 === "" || raw.length < 5) throw new NoteError("malformed note: signature line");
    if (++count > MAX_SIGNATURES) throw new NoteError("malformed note: too many signatures");
    const hash = Buffer.from(raw).readUInt32BE(0);
    const sig = raw.subarray(4);
    const v = verifiers.find((x) => x.name === name && x.keyHash === hash);
    const id = `${name}+${hex8(hash)}`;
    if (!v) {
      if (!seenUnverified.has(line)) {
        seenUnverified.add(line);
        note.unverifiedSigs.push({ name, keyHash: hash, base64: b64 });
      }
      continue;
    }
    if (seen.has(id)) continue;
    seen.add(id);
    if (!v.verify(textBytes, sig)) throw new NoteError(`invalid signature by ${id}`);
    note.sigs.push({ name, keyHash: hash, base64: b64 });
  }
  if (note.sigs.length === 0) throw new UnverifiedNoteError(note);
  return note;
}
