import { Code, ConnectError } from "@connectrpc/connect";
import { currentContext, invalidArgument, permissionDenied, type Principal } from "@bulwark/core";
import { CiphertextAuthError, MalformedCiphertextError, open, parseCiphertext, seal, type Binding } from "./ciphertext.js";
import { doesNotDecrypt, keyDestroyed, versionDisabled } from "./errors.js";
import { KeyRings, type RingMeta, type RingScope } from "./rings.js";

/** Who is asking, as far as ring ownership goes. */
export interface Caller {
  /** The call's tenant. */
  readonly tenantId: string | undefined;
  /** The Bulwark service calling as itself (`svc_<name>`), if it is one. */
  readonly service: string | undefined;
}

/** The caller of the current call. */
export function currentCaller(): Caller {
  const ctx = currentContext();
  return { tenantId: ctx?.tenantId, service: serviceOf(ctx?.principal) };
}

function serviceOf(p: Principal | undefined): string | undefined {
  return p?.kind === "service" && p.id.startsWith("svc_") ? p.id.slice(4) : undefined;
}

/** Which ring a request means: the tenant's, a subject's, or the calling service's own. */
export function scopeOf(caller: Caller, subjectId: string, serviceRing: boolean): RingScope {
  if (serviceRing) {
    if (subjectId !== "") throw invalidArgument("subject_id", "cannot be combined with service_ring");
    if (caller.service === undefined) throw permissionDenied("service_ring is only for a Bulwark service calling as itself");
    return { kind: "service", tenantId: null, subjectId: caller.service };
  }
  if (caller.tenantId === undefined) throw permissionDenied("the call names no tenant (platform principals name one with the bulwark-tenant header)");
  return subjectId === "" ? { kind: "tenant", tenantId: caller.tenantId, subjectId: null } : { kind: "subject", tenantId: caller.tenantId, subjectId };
}

/** Checks an encryption context: up to 16 entries, keys 1-128 and values up to 1024 characters. */
export function checkContext(context: Readonly<Record<string, string>>, field = "context"): Record<string, string> {
  const entries = Object.entries(context);
  if (entries.length > 16) throw invalidArgument(field, "must have at most 16 entries");
  for (const [k, v] of entries) {
    if (k.length < 1 || k.length > 128 || !k.isWellFormed()) throw invalidArgument(`${field}`, "keys must be 1-128 characters");
    if (v.length > 1024 || !v.isWellFormed()) throw invalidArgument(`${field}["${k.slice(0, 32)}"]`, "must be at most 1024 characters");
  }
  return Object.fromEntries(entries);
}

/** A ciphertext and where it came from. */
export interface Sealed {
  readonly ciphertext: Buffer;
  readonly ring: RingMeta;
  readonly version: number;
}

/** A plaintext and where it came from. */
export interface Opened {
  readonly plaintext: Buffer;
  readonly ring: RingMeta;
  readonly version: number;
}

/**
 * Envelope encryption over the key rings: what EncryptionService, the vault
 * and webhook secrets call. Encrypting uses the current version of the
 * scope's ring; decrypting finds the ring named in the ciphertext, checks
 * that it is the caller's, not destroyed, and that the version is not below
 * the minimum, then authenticates tenant, purpose and context.
 */
export class Envelope {
  readonly rings: KeyRings;

  constructor(rings: KeyRings) {
    this.rings = rings;
  }

  /** Encrypts under the current version of the scope's ring (created on first use). */
  async encrypt(scope: RingScope, plaintext: Uint8Array, purpose: string, context: Readonly<Record<string, string>>): Promise<Sealed> {
    const ring = KeyRings.usable((await this.rings.ringFor(scope, true))!);
    const version = ring.currentVersion;
    const key = await this.rings.keyOf(ring, version);
    return { ciphertext: seal(key, ring.id, version, plaintext, bindingOf(ring, purpose, context)), ring, version };
  }

  /** Decrypts ciphertext of one of the caller's rings; see errors.ts for the refusals. */
  async decrypt(caller: Caller, ciphertext: Uint8Array, purpose: string, context: Readonly<Record<string, string>>): Promise<Opened> {
    let parsed;
    try {
      parsed = parseCiphertext(ciphertext);
    } catch (err) {
      if (err instanceof MalformedCiphertextError) throw doesNotDecrypt();
      throw err;
    }
    const ring = await this.rings.ringById(parsed.keyId, caller);
    if (ring === undefined) throw doesNotDecrypt();
    if (ring.destroyed) throw keyDestroyed();
    if (parsed.version < 1 || parsed.version > ring.currentVersion) throw doesNotDecrypt();
    if (parsed.version < ring.minDecryptVersion) throw versionDisabled();
    const key = await this.rings.keyOf(ring, parsed.version);
    try {
      return { plaintext: open(key, parsed, bindingOf(ring, purpose, context)), ring, version: parsed.version };
    } catch (err) {
      if (err instanceof CiphertextAuthError) throw doesNotDecrypt();
      throw err;
    }
  }

  /** Decrypts and re-encrypts under the ring's current version; the plaintext never leaves. */
  async rewrap(caller: Caller, ciphertext: Uint8Array, purpose: string, context: Readonly<Record<string, string>>): Promise<Sealed & { previousVersion: number }> {
    const opened = await this.decrypt(caller, ciphertext, purpose, context);
    try {
      const ring = KeyRings.usable(opened.ring);
      const version = ring.currentVersion;
      const key = await this.rings.keyOf(ring, version);
      return { ciphertext: seal(key, ring.id, version, opened.plaintext, bindingOf(ring, purpose, context)), ring, version, previousVersion: opened.version };
    } finally {
      opened.plaintext.fill(0);
    }
  }
}

function bindingOf(ring: RingMeta, purpose: string, context: Readonly<Record<string, string>>): Binding {
  return { tenantId: ring.tenantId ?? "", purpose, context };
}

/** The gRPC code and message of an error, for one item of a batch. */
export function itemError(err: unknown): { code: number; message: string } {
  if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
  return { code: Code.Internal, message: "internal error" };
}
