import { Migration } from "@mikro-orm/migrations";

/**
 * Sign-in hardening.
 *
 * Throttle counters count checks in flight (`pending`, each slot expiring at
 * `pending_until` so a crashed replica cannot hold one) apart from real
 * failures, so concurrent correct attempts are never counted as failures;
 * and each counter carries its rule (threshold, window, first and longest
 * lock, and whether it is a fixed-window rate rather than a failure count),
 * so one atomic statement can apply different rules to an account, an
 * address, a second factor or a mail rate. Existing rows keep the account
 * rule.
 *
 * The counters also open to a transaction that asks for them by name
 * (`app.counters = on`, set by SignInThrottle), whatever tenant it is scoped
 * to: a sign-in then counts its attempt and reads its user — under the
 * user's tenant scope — in one statement, without the whole platform scope.
 *
 * An MFA challenge remembers the account counter of the password sign-in
 * that opened it: that counter is cleared only when the second factor
 * passes.
 *
 * Housekeeping deletes expired rows by `expires_at`; these indexes keep
 * those deletes from scanning whole tables.
 */
export class Migration20261201100000 extends Migration {
  override up(): void {
    this.addSql(`alter table sign_in_throttles
      add column pending integer not null default 0,
      add column pending_until timestamptz null,
      add column threshold integer not null default 5,
      add column window_s integer not null default 3600,
      add column base_lock_s integer not null default 1,
      add column max_lock_s integer not null default 900,
      add column fixed_window boolean not null default false`);
    this.addSql(`create policy sign_in_counters on sign_in_throttles
      using (tenant_id is null and current_setting('app.counters', true) = 'on')
      with check (tenant_id is null and current_setting('app.counters', true) = 'on')`);
    this.addSql("alter table mfa_challenges add column account_key text not null default ''");
    this.addSql("create index mfa_challenges_expires_idx on mfa_challenges (expires_at)");
    this.addSql("create index refresh_tokens_expires_idx on refresh_tokens (expires_at)");
    this.addSql("create index password_reset_tokens_expires_idx on password_reset_tokens (expires_at)");
    this.addSql("create index email_change_tokens_expires_idx on email_change_tokens (expires_at)");
    this.addSql("create index operator_sessions_expires_idx on operator_sessions (expires_at)");
  }

  override down(): void {
    for (const i of ["operator_sessions_expires_idx", "email_change_tokens_expires_idx", "password_reset_tokens_expires_idx", "refresh_tokens_expires_idx", "mfa_challenges_expires_idx"]) this.addSql(`drop index if exists ${i}`);
    this.addSql("alter table mfa_challenges drop column if exists account_key");
    this.addSql("drop policy if exists sign_in_counters on sign_in_throttles");
    this.addSql("alter table sign_in_throttles drop column pending, drop column pending_until, drop column threshold, drop column window_s, drop column base_lock_s, drop column max_lock_s, drop column fixed_window");
  }
}
