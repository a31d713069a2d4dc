import argon2 from "argon2";

/** argon2id cost parameters (OWASP's minimum: 19 MiB, 2 passes, 1 lane). */
export interface Argon2Params {
  /** Memory in KiB. */
  readonly memoryCost: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

let inFlight = 0;

/**
 * argon2 operations (hashes and verifications) started in this process and
 * not finished: they queue for libuv's thread pool, shared by every hasher
 * of the process, so this is its queue depth (the `bulwark_identity_argon2_in_flight` gauge).
 */
export function argon2InFlight(): number {
  return inFlight;
}

async function counted<T>(work: () => Promise<T>): Promise<T> {
  inFlight++;
  try {
    return await work();
  } finally {
    inFlight--;
  }
}

/** The parameters new hashes use unless configured otherwise. */
export const defaultArgon2Params: Argon2Params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/**
 * Hashes and verifies passwords with argon2id. The work runs on libuv's
 * thread pool (the `argon2` binding is asynchronous), so hashing never
 * blocks the event loop. A hash made with other parameters still verifies;
 * `needsRehash` tells sign-in to store a new one.
 */
export class PasswordHasher {
  readonly params: Argon2Params;
  #dummy: Promise<string> | undefined;

  constructor(params: Partial<Argon2Params> = {}) {
    this.params = { ...defaultArgon2Params, ...params };
  }

  /** An argon2id PHC string for `password`. */
  hash(password: string): Promise<string> {
    return counted(() => argon2.hash(password, { type: argon2.argon2id, ...this.params }));
  }

  /** True if `password` matches `hash`; false for a malformed hash. */
  async verify(hash: string, password: string): Promise<boolean> {
    try {
      return await counted(() => argon2.verify(hash, password));
    } catch {
      return false;
    }
  }

  /** True when `hash` was made with other parameters than the current ones. */
  needsRehash(hash: string): boolean {
    try {
      return argon2.needsRehash(hash, { ...this.params });
    } catch {
      return true;
    }
  }

  /**
   * Spends the time of one verification and answers false: used for unknown
   * users and users without a password, so that sign-in takes as long for
   * them as for a real account with a wrong password.
   */
  async verifyDummy(password: string): Promise<false> {
    this.#dummy ??= this.hash("bulwark-dummy-password-never-matches");
    await this.verify(await this.#dummy, password);
    return false;
  }
}
