import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { AuditEntrySchema, type AuditEntry } from "@bulwark/contracts";

/**
 * The Merkle leaf of an entry: the deterministic protobuf encoding of the
 * stored `bulwark.audit.v1.AuditEntry` (protobuf-es `toBinary`: fields in
 * field-number order, proto3 defaults omitted, repeated fields in order, no
 * maps, no unknown fields), personal data as ciphertext.
 */
export function leafOf(entry: AuditEntry): Uint8Array {
  return toBinary(AuditEntrySchema, entry);
}

/** The entry a leaf encodes. */
export function entryOfLeaf(leaf: Uint8Array): AuditEntry {
  return fromBinary(AuditEntrySchema, leaf);
}
