import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A brute-force counter for one key (`acct:<tenant>:<email>`,
 * `ip:<address>`, `mfa:<user>`, …) with the rule it follows. Platform-level:
 * `tenantId` is always null, so only the platform scope sees these rows.
 * Checks in flight are `pending` apart from `failures`; admitting and
 * settling a check are one atomic statement each (SignInThrottle).
 */
export const SignInThrottleEntity = defineEntity({
  name: "SignInThrottle",
  tableName: "sign_in_throttles",
  properties: (p) => ({
    key: p.string().primary(),
    tenantId: p.string().nullable(),
    failures: p.integer(),
    lockedUntil: p.datetime().nullable(),
    updatedAt: p.datetime(),
    pending: p.integer().default(0),
    pendingUntil: p.datetime().nullable(),
    threshold: p.integer().default(5),
    windowS: p.integer().default(3_600),
    baseLockS: p.integer().default(1),
    maxLockS: p.integer().default(900),
  }),
});

/** A loaded throttle row. */
export type SignInThrottleRow = InferEntity<typeof SignInThrottleEntity>;
