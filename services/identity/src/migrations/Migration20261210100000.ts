import { Migration } from "@mikro-orm/migrations";

/**
 * Passkey credential ids are unique per tenant, not across the platform.
 * Authenticators choose credential ids, so the global index let a user of
 * one tenant learn that an id exists elsewhere (ALREADY_EXISTS) and block
 * its registration in every other tenant by registering it first. A
 * passkey sign-in always knows its tenant (the challenge was issued for a
 * tenant slug), so (tenant_id, credential_id) finds exactly one row.
 */
export class Migration20261210100000 extends Migration {
  override up(): void {
    this.addSql("create unique index passkeys_tenant_credential_id_key on passkeys (tenant_id, credential_id)");
    this.addSql("drop index if exists passkeys_credential_id_key");
  }

  override down(): void {
    this.addSql("create unique index passkeys_credential_id_key on passkeys (credential_id)");
    this.addSql("drop index if exists passkeys_tenant_credential_id_key");
  }
}
