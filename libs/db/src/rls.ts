import { quoteQualified } from "./identifiers.js";

/** The name of the row-level-security policy every tenant-owned table gets. */
export const tenantPolicyName = "tenant_isolation";

/**
 * The predicate of the tenant policy: a row is visible and writable when it
 * belongs to the tenant of the current transaction, or when the transaction
 * runs in the explicit platform scope. `nullif` turns the empty string that
 * an unset custom setting leaves behind into NULL, so a transaction with no
 * scope matches nothing (and rows with a NULL tenant are platform-only).
 */
export const tenantPredicateSql =
  "(tenant_id = nullif(current_setting('app.tenant_id', true), '') OR current_setting('app.platform', true) = 'on')";

/**
 * The statements that put a table under tenant isolation, for
 * `this.addSql(...)` in a migration. The table must have a `tenant_id text`
 * column. The app role is not the table owner, so the policy binds it even
 * without FORCE; migrations (running as the owner) can still backfill.
 * Re-running the statements is harmless.
 */
export function tenantIsolationSql(table: string): string[] {
  const t = quoteQualified(table);
  return [
    `alter table ${t} enable row level security`,
    `drop policy if exists ${tenantPolicyName} on ${t}`,
    `create policy ${tenantPolicyName} on ${t} using ${tenantPredicateSql} with check ${tenantPredicateSql}`,
  ];
}
