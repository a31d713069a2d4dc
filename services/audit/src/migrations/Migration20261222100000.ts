import { Migration } from "@mikro-orm/migrations";

/**
 * A tenant's deletion (DataSubjectParticipant.EraseTenantData, after its
 * closure's grace period) removes its whole trail: the retention role, the
 * only one the append-only trigger lets delete, may now also delete the
 * tenant's tree nodes, checkpoints and hash key (it could already delete
 * entries and leaves). Row-level security still confines it to the tenant
 * of the transaction (their tenant policy); the runtime role gains nothing.
 */
export class Migration20261222100000 extends Migration {
  override up(): void {
    this.addSql(`do $$
      declare app text := regexp_replace(current_user, '_owner$', '');
      begin
        execute format('grant select, delete on tree_nodes, checkpoints, hash_keys to %I', app || '_retention');
      end $$`);
  }

  override down(): void {
    this.addSql(`do $$
      declare app text := regexp_replace(current_user, '_owner$', '');
      begin
        execute format('revoke delete on tree_nodes, checkpoints, hash_keys from %I', app || '_retention');
        execute format('revoke select on hash_keys from %I', app || '_retention');
      end $$`);
  }
}
