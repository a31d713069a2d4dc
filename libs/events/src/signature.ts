import { fromBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, type Envelope } from "@bulwark/contracts";
import type { MeshKeys } from "@bulwark/core";

/** The NATS header carrying the publishing service's Ed25519 signature of the message data. */
export const signatureHeader = "bulwark-signature";

/** Raised for an event that is not what its stream's owner published: unsigned, forged, or out of place. */
export class ForgedEventError extends Error {
  override name = "ForgedEventError";
}

/** A message as it arrives: its subject, its bytes and its headers. */
export interface SignedMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Reads one header (NATS headers, or a record of them). */
  readonly header: (name: string) => string | undefined;
}

/** Where a verified event must come from. */
export interface ExpectedSource {
  /** The service that owns the stream or subject, e.g. "identity". */
  readonly service: string;
  /** The mesh's subject prefix, e.g. "bulwark". */
  readonly subjectPrefix: string;
}

/** The signature header of an envelope, signed by `keys` (the outbox stores it with the row). */
export function signEnvelope(keys: MeshKeys, data: Uint8Array): Record<string, string> {
  return { [signatureHeader]: keys.sign(data) };
}

/**
 * The envelope of a message, once proven to come from the service that
 * owns its subject: signed by that service over the exact bytes, with
 * `source` naming it and `type` equal to the subject it arrived on, under
 * `<prefix>.<service>.`. Anyone who can reach NATS can publish bytes; only
 * the owning service can produce this. Throws ForgedEventError otherwise.
 */
export function verifiedEnvelope(keys: MeshKeys, msg: SignedMessage, expected: ExpectedSource): Envelope {
  const signature = msg.header(signatureHeader);
  if (signature === undefined || signature === "") throw new ForgedEventError("event is not signed");
  if (!keys.verify(expected.service, msg.data, signature)) throw new ForgedEventError(`event is not signed by ${expected.service}`);
  return envelopeIn(msg, expected);
}

/**
 * `verifiedEnvelope` with the signature checked on the thread pool (for a
 * batch: its checks run in parallel). Rejects with ForgedEventError.
 */
export async function verifiedEnvelopeAsync(keys: MeshKeys, msg: SignedMessage, expected: ExpectedSource): Promise<Envelope> {
  const signature = msg.header(signatureHeader);
  if (signature === undefined || signature === "") throw new ForgedEventError("event is not signed");
  if (!(await keys.verifyAsync(expected.service, msg.data, signature))) throw new ForgedEventError(`event is not signed by ${expected.service}`);
  return envelopeIn(msg, expected);
}

/** The envelope of a message whose signature was checked, once it is proven to belong on its subject. */
function envelopeIn(msg: SignedMessage, expected: ExpectedSource): Envelope {
  let envelope: Envelope;
  try {
    envelope = fromBinary(EnvelopeSchema, msg.data);
  } catch {
    throw new ForgedEventError("event is not an envelope");
  }
  if (envelope.source !== expected.service || envelope.type !== msg.subject || !msg.subject.startsWith(`${expected.subjectPrefix}.${expected.service}.`)) {
    throw new ForgedEventError(`event does not belong on ${msg.subject.slice(0, 120)}`);
  }
  return envelope;
}
