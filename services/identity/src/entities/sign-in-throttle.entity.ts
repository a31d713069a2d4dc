import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * A brute-force counter for one key (`acct:<tenant>:<email>` or
 * `ip:<address>`). Platform-level: `tenantId` is always null, so only the
 * platform scope sees these rows. Updated with one atomic upsert per attempt.
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
  }),
});

/** A loaded throttle row. */
export type SignInThrottleRow = InferEntity<typeof SignInThrottleEntity>;
