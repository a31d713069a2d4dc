import { Migration } from "@mikro-orm/migrations";

/**
 * Token-signing private keys move onto the keys service: a new column for
 * the private JWK encrypted through keys, and the plain one may be null
 * (identity's background migration encrypts existing rows and clears it;
 * a migration cannot call keys). One of the two is always set.
 */
export class Migration20261215120000 extends Migration {
  override up(): void {
    this.addSql("alter table signing_keys add column private_jwk_sealed bytea null");
    this.addSql("alter table signing_keys alter column private_jwk drop not null");
    this.addSql("alter table signing_keys add constraint signing_keys_private_present check (private_jwk is not null or private_jwk_sealed is not null)");
  }

  override down(): void {
    this.addSql("alter table signing_keys drop constraint if exists signing_keys_private_present");
    this.addSql("alter table signing_keys drop column if exists private_jwk_sealed");
  }
}
