import { randomBytes } from "node:crypto";
import type { ServiceImpl } from "@connectrpc/connect";
import type {
  DecryptBatchRequest,
  DecryptRequest,
  DestroyKeyRequest,
  DestroySubjectKeyRequest,
  EncryptBatchRequest,
  EncryptionService,
  EncryptRequest,
  GenerateDataKeyRequest,
  GetKeyRingRequest,
  KeyRing,
  RewrapRequest,
  RotateKeyRequest,
  SetMinimumDecryptionVersionRequest,
} from "@bulwark/contracts";
import { failedPrecondition, invalidArgument, notFound } from "@bulwark/core";
import { checkContext, currentCaller, itemError, scopeOf, type Envelope } from "./envelope.js";
import { keyRingToProto } from "./mappers.js";
import type { RotationPeriods } from "./policy.js";
import type { KeyRings, RingMeta } from "./rings.js";

/** The most plaintext one EncryptBatch may carry in all. */
const maxBatchPlaintext = 1024 * 1024;

/** What EncryptionService needs. */
export interface EncryptionServiceDeps {
  readonly envelope: Envelope;
  readonly rings: KeyRings;
  readonly periods: RotationPeriods;
}

/**
 * bulwark.keys.v1.EncryptionService: envelope encryption under the
 * caller's tenant, subject or service rings (see the proto for the
 * contract and envelope.ts for the rules).
 */
export class EncryptionServiceImpl implements ServiceImpl<typeof EncryptionService> {
  readonly #d: EncryptionServiceDeps;

  constructor(deps: EncryptionServiceDeps) {
    this.#d = deps;
  }

  async encrypt(req: EncryptRequest) {
    const sealed = await this.#d.envelope.encrypt(scopeOf(currentCaller(), req.subjectId, req.serviceRing), req.plaintext, req.purpose, checkContext(req.context));
    return { ciphertext: sealed.ciphertext, keyId: sealed.ring.id, keyVersion: sealed.version };
  }

  async decrypt(req: DecryptRequest) {
    const opened = await this.#d.envelope.decrypt(currentCaller(), req.ciphertext, req.purpose, checkContext(req.context));
    return { plaintext: opened.plaintext, keyId: opened.ring.id, keyVersion: opened.version };
  }

  async rewrap(req: RewrapRequest) {
    const r = await this.#d.envelope.rewrap(currentCaller(), req.ciphertext, req.purpose, checkContext(req.context));
    return { ciphertext: r.ciphertext, keyId: r.ring.id, keyVersion: r.version, previousKeyVersion: r.previousVersion };
  }

  async encryptBatch(req: EncryptBatchRequest) {
    let total = 0;
    for (const item of req.items) total += item.plaintext.length;
    if (total > maxBatchPlaintext) throw invalidArgument("items", `must carry at most ${maxBatchPlaintext} bytes of plaintext in all`);
    const caller = currentCaller();
    const items = req.items.map((item, i) => ({ scope: scopeOf(caller, item.subjectId, item.serviceRing), context: checkContext(item.context, `items[${i}].context`), item }));
    const results = [];
    for (const { scope, context, item } of items) {
      try {
        const s = await this.#d.envelope.encrypt(scope, item.plaintext, item.purpose, context);
        results.push({ result: { ciphertext: s.ciphertext, keyId: s.ring.id, keyVersion: s.version } });
      } catch (err) {
        results.push({ error: itemError(err) });
      }
    }
    return { results };
  }

  async decryptBatch(req: DecryptBatchRequest) {
    const caller = currentCaller();
    const items = req.items.map((item, i) => ({ context: checkContext(item.context, `items[${i}].context`), item }));
    const results = [];
    for (const { context, item } of items) {
      try {
        const o = await this.#d.envelope.decrypt(caller, item.ciphertext, item.purpose, context);
        results.push({ result: { plaintext: o.plaintext, keyId: o.ring.id, keyVersion: o.version } });
      } catch (err) {
        results.push({ error: itemError(err) });
      }
    }
    return { results };
  }

  async generateDataKey(req: GenerateDataKeyRequest) {
    const dataKey = randomBytes(32);
    const sealed = await this.#d.envelope.encrypt(scopeOf(currentCaller(), req.subjectId, false), dataKey, req.purpose, checkContext(req.context));
    return { plaintextKey: dataKey, wrappedKey: sealed.ciphertext, keyId: sealed.ring.id, keyVersion: sealed.version };
  }

  async getKeyRing(req: GetKeyRingRequest) {
    // read_only: a describe that never creates (posture evidence must not change what it observes).
    const ring = await this.#d.rings.ringFor(scopeOf(currentCaller(), req.subjectId, false), !req.readOnly);
    if (ring === undefined) throw notFound("key ring");
    return { keyRing: await this.#describe(await this.#d.rings.fresh(ring)) };
  }

  async rotateKey(req: RotateKeyRequest) {
    const ring = (await this.#d.rings.ringFor(scopeOf(currentCaller(), req.subjectId, false), true))!;
    return { keyRing: await this.#describe(await this.#d.rings.rotate(ring)) };
  }

  async setMinimumDecryptionVersion(req: SetMinimumDecryptionVersionRequest) {
    const ring = (await this.#d.rings.ringFor(scopeOf(currentCaller(), req.subjectId, false), true))!;
    return { keyRing: await this.#describe(await this.#d.rings.setMinimum(ring, req.version)) };
  }

  async destroyKey(req: DestroyKeyRequest) {
    const caller = currentCaller();
    scopeOf(caller, "", false);
    const ring = await this.#d.rings.ringById(req.keyId, { tenantId: caller.tenantId, service: undefined });
    if (ring === undefined) throw notFound("key ring");
    const out = await this.#d.rings.destroy({ ringId: ring.id }, req.reason);
    if (!out.destroyedNow) throw failedPrecondition("key ring already destroyed");
    return { keyRing: await this.#describe(out.ring) };
  }

  async destroySubjectKey(req: DestroySubjectKeyRequest) {
    const out = await this.#d.rings.destroy({ scope: scopeOf(currentCaller(), req.subjectId, false) }, req.reason);
    return { keyRing: await this.#describe(out.ring) };
  }

  async #describe(ring: RingMeta): Promise<KeyRing> {
    const [versions, period] = await Promise.all([this.#d.rings.versionsOf(ring), this.#d.periods.of(ring.tenantId)]);
    return keyRingToProto(ring, versions, period);
  }
}
