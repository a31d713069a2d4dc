import { test } from "node:test";
import assert from "node:assert/strict";
import {
  NoteError,
  UnverifiedNoteError,
  formatCheckpoint,
  generateNoteKey,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseSignerKey,
  parseVerifierKey,
  signCheckpoint,
  signNote,
  CheckpointError,
} from "../src/index.js";

// golang.org/x/mod/sumdb/note note_test.go
const vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const signed = `${text}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

test("keys parse as Go's note package encodes them, and the key hash matches", () => {
  const v = parseVerifierKey(vkey);
  assert.equal(v.name, "PeterNeumann");
  assert.equal(v.keyHash, 0xc74f20a3);
  const s = parseSignerKey(skey);
  assert.equal(s.keyHash, 0xc74f20a3);
  assert.equal(s.verifierKey, vkey);
});

test("signing reproduces Go's note signature byte for byte (Ed25519 is deterministic)", async () => {
  assert.equal(await signNote(text, parseSignerKey(skey)), signed);
});

test("opening checks the signature of known keys", () => {
  const n = openNote(signed, [parseVerifierKey(vkey)]);
  assert.equal(n.text, text);
  assert.deepEqual(n.sigs.map((s) => s.name), ["PeterNeumann"]);
  assert.throws(() => openNote(signed.replace("cryptography", "cryptografy"), [parseVerifierKey(vkey)]), NoteError);
  const other = generateNoteKey("PeterNeumann");
  assert.throws(() => openNote(signed, [parseVerifierKey(other.verifierKey)]), UnverifiedNoteError);
});

test("malformed keys and notes are refused", () => {
  for (const bad of [
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "Peter+Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "",
  ]) {
    assert.throws(() => parseVerifierKey(bad), NoteError, bad);
  }
  assert.throws(() => parseSignerKey("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"), NoteError);
  const v = [parseVerifierKey(vkey)];
  for (const bad of [text, `${text}\n`, `${text}\n— PeterNeumann\n`, `${text}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`, signed.slice(0, -1), `a\u0001${signed}`]) {
    assert.throws(() => openNote(bad, v), NoteError);
  }
});

test("a fresh key signs and verifies; names with spaces or '+' are refused", async () => {
  const k = generateNoteKey("bulwark.example/audit/ten_1");
  assert.match(k.verifierKey, /^bulwark\.example\/audit\/ten_1\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/);
  const msg = await signNote("hello\n", parseSignerKey(k.signerKey));
  assert.equal(openNote(msg, [parseVerifierKey(k.verifierKey)]).text, "hello\n");
  assert.throws(() => generateNoteKey("a b"), NoteError);
  assert.throws(() => generateNoteKey("a+b"), NoteError);
});

test("checkpoints format, parse and round-trip through a signed note", async () => {
  const root = new Uint8Array(32).fill(7);
  const body = formatCheckpoint({ origin: "example.com/audit/ten_1", size: 42, rootHash: root, extensions: ["ext one"] });
  assert.equal(body, `example.com/audit/ten_1\n42\n${Buffer.from(root).toString("base64")}\next one\n`);
  assert.deepEqual(parseCheckpoint(body), { origin: "example.com/audit/ten_1", size: 42, rootHash: root, extensions: ["ext one"] });
  const k = generateNoteKey("example.com/audit/ten_1");
  const signedCp = await signCheckpoint({ origin: "example.com/audit/ten_1", size: 42, rootHash: root }, parseSignerKey(k.signerKey));
  const c = openCheckpoint(signedCp, parseVerifierKey(k.verifierKey), "example.com/audit/ten_1");
  assert.equal(c.size, 42);
  assert.deepEqual(c.rootHash, root);
  assert.throws(() => openCheckpoint(signedCp, parseVerifierKey(k.verifierKey), "other"), CheckpointError);
  for (const bad of ["o\n042\nAAAA\n", "o\n1\n", "o\n1\nAAAA\n", `o\n-1\n${Buffer.from(root).toString("base64")}\n`, `o\n1\n${Buffer.from(root).toString("base64")}`, `\n1\n${Buffer.from(root).toString("base64")}\n`]) {
    assert.throws(() => parseCheckpoint(bad), CheckpointError, JSON.stringify(bad));
  }
});
