/**
 * A software WebAuthn authenticator for the passkey tests, built from
 * node:crypto alone so the server's verification runs against real
 * ceremonies: ES256 (P-256) credentials, "none" attestation with CBOR
 * authenticator data, assertions signed over authData ‖ SHA-256(clientData)
 * with DER ECDSA signatures, and the JSON shapes browsers' `toJSON()` give
 * (base64url fields). It can be cloned — the copy keeps the keys and the
 * counters, as a stolen authenticator would — to test clone detection.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";

type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor> | { [key: string]: Cbor };

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

/** Encodes the CBOR subset WebAuthn needs: ints, byte and text strings, arrays, maps (insertion order kept). */
export function cbor(value: Cbor): Buffer {
  if (typeof value === "number") {
    if (!Number.isInteger(value) || Math.abs(value) > 0xffffffff) throw new Error("only 32-bit integers");
    return value >= 0 ? head(0, value) : head(1, -1 - value);
  }
  if (typeof value === "string") {
    const bytes = Buffer.from(value, "utf8");
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value]);
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)]);
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

const flagUP = 0x01;
const flagUV = 0x04;
const flagAT = 0x40;

interface SoftCredential {
  readonly id: Buffer;
  readonly privateKey: KeyObject;
  readonly cose: Buffer;
  readonly userHandle: string;
  signCount: number;
}

/** Options of a software authenticator. */
export interface AuthenticatorOptions {
  /** The origin its "browser" reports (default http://localhost:3000, the server's default). */
  readonly origin?: string;
  /** The RP ID it hashes into authData (default: the options' rp.id, else "localhost"). */
  readonly rpId?: string;
  /** Whether it verifies the user (PIN, biometrics): the UV flag. Default true. */
  readonly userVerification?: boolean;
  /** How much the counter grows per assertion (0: an authenticator without a counter). Default 1. */
  readonly counterStep?: number;
}

/** What `create` and `get` parse from the server's options JSON. */
interface CreationOptions {
  challenge: string;
  rp: { id?: string; name: string };
  user: { id: string; name: string };
  excludeCredentials?: { id: string }[];
}
interface RequestOptions {
  challenge: string;
  rpId?: string;
  allowCredentials?: { id: string }[];
}

/** A WebAuthn authenticator and the browser around it. */
export class SoftwareAuthenticator {
  readonly #credentials: SoftCredential[];
  readonly options: AuthenticatorOptions;

  constructor(options: AuthenticatorOptions = {}, credentials: SoftCredential[] = []) {
    this.options = options;
    this.#credentials = credentials;
  }

  /** The ids (base64url) of the credentials it holds. */
  get credentialIds(): string[] {
    return this.#credentials.map((c) => c.id.toString("base64url"));
  }

  /** A copy holding the same keys and counters, which then diverge. */
  clone(options: AuthenticatorOptions = this.options): SoftwareAuthenticator {
    return new SoftwareAuthenticator(
      options,
      this.#credentials.map((c) => ({ ...c })),
    );
  }

  /**
   * navigator.credentials.create: a new credential; returns
   * RegistrationResponseJSON as a string. `credentialId` (base64url) picks
   * its id, as any authenticator may: ids are the authenticator's choice.
   */
  create(optionsJson: string, opts: { credentialId?: string } = {}): string {
    const o = JSON.parse(optionsJson) as CreationOptions;
    if ((o.excludeCredentials ?? []).some((e) => this.credentialIds.includes(e.id))) throw new Error("InvalidStateError: the authenticator already holds an excluded credential");
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const jwk = publicKey.export({ format: "jwk" });
    const cose = cbor(
      new Map<number, Cbor>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x!, "base64url")],
        [-3, Buffer.from(jwk.y!, "base64url")],
      ]),
    );
    const cred: SoftCredential = { id: opts.credentialId !== undefined ? Buffer.from(opts.credentialId, "base64url") : randomBytes(16), privateKey, cose, userHandle: o.user.id, signCount: 0 };
    this.#credentials.push(cred);
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(cred.id.length);
    const authData = Buffer.concat([this.#rpIdHash(o.rp.id), Buffer.from([this.#flags() | flagAT]), counterBytes(0), Buffer.alloc(16), idLength, cred.id, cose]);
    const clientDataJSON = this.#clientData("webauthn.create", o.challenge);
    const attestationObject = cbor({ fmt: "none", attStmt: {}, authData });
    const id = cred.id.toString("base64url");
    return JSON.stringify({
      id,
      rawId: id,
      type: "public-key",
      response: { clientDataJSON: clientDataJSON.toString("base64url"), attestationObject: attestationObject.toString("base64url"), transports: ["internal", "hybrid"] },
      clientExtensionResults: {},
      authenticatorAttachment: "platform",
    });
  }

  /**
   * navigator.credentials.get: an assertion with the allowed (or, for
   * discoverable sign-in, the given or first) credential; returns
   * AuthenticationResponseJSON as a string.
   */
  get(optionsJson: string, credentialId?: string): string {
    const o = JSON.parse(optionsJson) as RequestOptions;
    const allowed = (o.allowCredentials ?? []).map((c) => c.id);
    const cred = this.#credentials.find((c) => {
      const id = c.id.toString("base64url");
      return (credentialId === undefined || id === credentialId) && (allowed.length === 0 || allowed.includes(id));
    });
    if (cred === undefined) throw new Error("NotAllowedError: no matching credential");
    cred.signCount += this.options.counterStep ?? 1;
    const authData = Buffer.concat([this.#rpIdHash(o.rpId), Buffer.from([this.#flags()]), counterBytes(cred.signCount)]);
    const clientDataJSON = this.#clientData("webauthn.get", o.challenge);
    const signature = sign("sha256", Buffer.concat([authData, createHash("sha256").update(clientDataJSON).digest()]), cred.privateKey);
    const id = cred.id.toString("base64url");
    return JSON.stringify({
      id,
      rawId: id,
      type: "public-key",
      response: { clientDataJSON: clientDataJSON.toString("base64url"), authenticatorData: authData.toString("base64url"), signature: signature.toString("base64url"), userHandle: cred.userHandle },
      clientExtensionResults: {},
      authenticatorAttachment: "platform",
    });
  }

  #flags(): number {
    return flagUP | ((this.options.userVerification ?? true) ? flagUV : 0);
  }

  #rpIdHash(fromOptions: string | undefined): Buffer {
    return createHash("sha256")
      .update(this.options.rpId ?? fromOptions ?? "localhost")
      .digest();
  }

  #clientData(type: string, challenge: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: this.options.origin ?? "http://localhost:3000", crossOrigin: false }), "utf8");
  }
}

function counterBytes(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
