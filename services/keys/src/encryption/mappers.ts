import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { KeyRingKind, KeyRingSchema, KeyState, type KeyRing } from "@bulwark/contracts";
import type { RingMeta, VersionRow } from "./rings.js";

const kinds = { tenant: KeyRingKind.TENANT, subject: KeyRingKind.SUBJECT, service: KeyRingKind.SERVICE } as const;

/** The wire form of a ring and its versions; `periodS` is its rotation period when known. */
export function keyRingToProto(ring: RingMeta, versions: readonly VersionRow[], periodS: number | undefined): KeyRing {
  return create(KeyRingSchema, {
    keyId: ring.id,
    kind: kinds[ring.kind],
    tenantId: ring.tenantId ?? "",
    subjectId: ring.subjectId ?? "",
    state: ring.destroyed ? KeyState.DESTROYED : KeyState.ENABLED,
    currentVersion: ring.currentVersion,
    minimumDecryptionVersion: ring.minDecryptVersion,
    versions: versions.map((v) => ({
      version: v.version,
      state: v.destroyed_at !== null ? KeyState.DESTROYED : v.version < ring.minDecryptVersion ? KeyState.DISABLED : KeyState.ENABLED,
      createTime: timestampFromDate(new Date(v.created_at)),
      masterKeyId: v.master_key_id ?? "",
    })),
    createTime: timestampFromDate(ring.createdAt),
    rotateTime: timestampFromDate(ring.rotatedAt),
    ...(periodS !== undefined && !ring.destroyed ? { nextRotateTime: timestampFromDate(new Date(ring.rotatedAt.getTime() + periodS * 1000)), rotationPeriod: durationFromMs(periodS * 1000) } : {}),
    ...(ring.destroyedAt !== null ? { destroyTime: timestampFromDate(ring.destroyedAt) } : {}),
  });
}
