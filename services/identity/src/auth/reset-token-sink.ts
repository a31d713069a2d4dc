/** A password reset token on its way to its user. */
export interface ResetDelivery {
  readonly tenantId: string;
  readonly userId: string;
  readonly email: string;
  readonly displayName: string;
  /** The secret itself; never logged, never in an event. */
  readonly token: string;
  readonly expiresAt: Date;
}

/**
 * Where RequestPasswordReset hands a reset token after commit. The SMTP
 * notifier plugs in here; until it exists the default drops the token, so
 * a reset can be requested but not completed by email.
 */
export interface ResetTokenSink {
  deliver(reset: ResetDelivery): Promise<void>;
}

/** Drops every token and logs nothing (the notifier is a later part). */
export const droppingResetTokenSink: ResetTokenSink = {
  deliver: async () => undefined,
};
