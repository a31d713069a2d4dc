/**
 * The audit trail end to end on real Postgres and NATS: tenancy's actions
 * reach it exactly once even while audit is down; the record cannot be
 * changed through the service's role, a superuser is refused by the
 * trigger, and a superuser who disables it and edits a row is caught by
 * recomputing the root from the export against the signed checkpoint.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { leafHash, openCheckpoint, parseVerifierKey, rootFromLeafHashes } from "@bulwark/tlog";
import { entryOfLeaf } from "@bulwark/audit";
import { identityModule } from "@bulwark/identity";
import { adminUrl, startTestService, testDatabase } from "../support/harness.js";
import { createUser, signIn, tenantWithSlug } from "../contract/support-auth.js";
import { auditQuery, auditUser, newTenant, startAuditMesh, waitForEntries, type AuditMesh } from "../contract/support-audit.js";

let mesh: AuditMesh;

before(async () => {
  mesh = await startAuditMesh();
});
after(async () => {
  await mesh?.stop();
});

async function exportOf(tenantId: string): Promise<{ note: string; leaves: Uint8Array[] }> {
  let note = "";
  const leaves: Uint8Array[] = [];
  for await (const m of auditUser(mesh, tenantId).exportEntries({})) {
    if (m.item.case === "checkpoint") note = m.item.value;
    else if (m.item.case === "entry") leaves.push(m.item.value.leaf);
  }
  return { note, leaves };
}

describe("the audit trail", () => {
  test("actions while audit is down are recorded once it is back, none lost and none twice", async () => {
    const tenantId = await newTenant(mesh);
    await waitForEntries(mesh, tenantId, 1);
    await mesh.stopAudit();
    for (const n of [1, 2, 3]) await mesh.tenancyOps.updateTenant({ tenantId, displayName: `Down ${n}`, updateMask: { paths: ["display_name"] } });
    await mesh.restartAudit();
    await waitForEntries(mesh, tenantId, 4);
    await new Promise((r) => setTimeout(r, 500));
    const rows = await auditQuery<{ event_id: string; action: string; actor_id: string }>(mesh, "select event_id, action, actor_id from $schema.entries where tenant_id = $1", [tenantId]);
    assert.equal(rows.length, 4);
    assert.equal(new Set(rows.map((r) => r.event_id)).size, 4, "no event twice");
    assert.equal(rows.filter((r) => r.action === "tenancy.tenant.updated").length, 3);
    assert.ok(rows.every((r) => r.actor_id === "bootstrap"), "the actor is the bootstrap operator that made the calls");
  });

  test("the service's role may only insert and select; UPDATE and DELETE are refused even to a superuser", async () => {
    const tenantId = await newTenant(mesh);
    await waitForEntries(mesh, tenantId, 1);
    const schema = mesh.audit.config.DATABASE_SCHEMA;
    const [priv] = await auditQuery<{ u: boolean; d: boolean; i: boolean; s: boolean }>(
      mesh,
      `select has_table_privilege($1, '"${schema}".entries', 'UPDATE') as u, has_table_privilege($1, '"${schema}".entries', 'DELETE') as d, has_table_privilege($1, '"${schema}".entries', 'INSERT') as i, has_table_privilege($1, '"${schema}".entries', 'SELECT') as s`,
      [`${schema}_app`],
    );
    assert.deepEqual(priv, { u: false, d: false, i: true, s: true });
    await assert.rejects(auditQuery(mesh, "update $schema.entries set action = 'x' where tenant_id = $1", [tenantId]), /append-only/);
    await assert.rejects(auditQuery(mesh, "delete from $schema.entries where tenant_id = $1", [tenantId]), /append-only/);
    await assert.rejects(auditQuery(mesh, "delete from $schema.leaves where tenant_id = $1", [tenantId]), /append-only/);
  });

  test("a row edited by a superuser who disables the trigger is named by recomputing the export against the checkpoint", async () => {
    const tenantId = await newTenant(mesh);
    for (const n of [1, 2, 3]) await mesh.tenancyOps.updateTenant({ tenantId, displayName: `Tamper ${n}`, updateMask: { paths: ["display_name"] } });
    await waitForEntries(mesh, tenantId, 4);
    const { verifierKey } = await auditUser(mesh, tenantId).getVerifierKey({});
    const before = await exportOf(tenantId);
    const cp = openCheckpoint(before.note, parseVerifierKey(verifierKey));
    assert.deepEqual(Buffer.from(rootFromLeafHashes(before.leaves.map(leafHash))), Buffer.from(cp.rootHash));

    // Rewrite entry 2's action inside its leaf, as someone with the database's keys would.
    const url = new URL(adminUrl);
    url.pathname = `/${testDatabase}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const schema = mesh.audit.config.DATABASE_SCHEMA;
      const [row] = (await client.query<{ leaf: Buffer }>(`select leaf from "${schema}".entries where tenant_id = $1 and leaf_index = 2`, [tenantId])).rows;
      const forged = Buffer.from(row!.leaf.toString("latin1").replace("tenancy.tenant.updated", "tenancy.tenant.viewed!"), "latin1");
      await client.query("begin");
      await client.query("set local session_replication_role = replica");
      await client.query(`update "${schema}".entries set leaf = $2 where tenant_id = $1 and leaf_index = 2`, [tenantId, forged]);
      await client.query("commit");
    } finally {
      await client.end();
    }
    const after = await exportOf(tenantId);
    const signedBefore = openCheckpoint(after.note, parseVerifierKey(verifierKey));
    assert.equal(signedBefore.size, cp.size, "nothing new to sign: the checkpoint still commits to the original root");
    assert.notDeepEqual(Buffer.from(rootFromLeafHashes(after.leaves.map(leafHash))), Buffer.from(signedBefore.rootHash));
    const tampered = after.leaves.findIndex((leaf, i) => !Buffer.from(leafHash(leaf)).equals(Buffer.from(leafHash(before.leaves[i]!))));
    assert.equal(tampered, 2);
    assert.equal(entryOfLeaf(after.leaves[2]!).action, "tenancy.tenant.viewed!");
  });

  test("a service started after audit has its stream recorded from its first event", async () => {
    const identity = await startTestService(identityModule, { prefix: mesh.tenancy.prefix, env: { TENANCY_URL: mesh.tenancy.baseUrl, KEYS_URL: mesh.keys.baseUrl } });
    try {
      const im = { tenancy: mesh.tenancy, identity, tenancyOps: mesh.tenancyOps, stop: () => Promise.resolve() };
      const tenant = await tenantWithSlug(im);
      const user = await createUser(im, tenant);
      await signIn(im, user);
      await waitForEntries(mesh, tenant.id, 1, "identity.user.signed_in");
    } finally {
      await identity.stop();
    }
  });

  test("two audit replicas on one schema keep each tenant's tree consistent", async () => {
    const { auditModule } = await import("@bulwark/audit");
    const second = await startTestService(auditModule, {
      prefix: mesh.tenancy.prefix,
      keep: true,
      reuse: { schema: mesh.audit.config.DATABASE_SCHEMA, prefix: mesh.tenancy.prefix },
      env: { TENANCY_URL: mesh.tenancy.baseUrl, KEYS_URL: mesh.keys.baseUrl },
    });
    try {
      const tenantId = await newTenant(mesh);
      await Promise.all(Array.from({ length: 20 }, (_, n) => mesh.tenancyOps.updateTenant({ tenantId, displayName: `Replica ${n}`, updateMask: { paths: ["display_name"] } })));
      await waitForEntries(mesh, tenantId, 21);
      const rows = await auditQuery<{ leaf_index: string }>(mesh, "select leaf_index from $schema.leaves where tenant_id = $1 order by leaf_index", [tenantId]);
      assert.deepEqual(rows.map((r) => Number(r.leaf_index)), Array.from({ length: 21 }, (_, i) => i), "one index per entry, no gap, no duplicate");
      const { verifierKey } = await auditUser(mesh, tenantId).getVerifierKey({});
      const exported = await exportOf(tenantId);
      const cp = openCheckpoint(exported.note, parseVerifierKey(verifierKey));
      assert.equal(cp.size, 21);
      assert.deepEqual(Buffer.from(rootFromLeafHashes(exported.leaves.map(leafHash))), Buffer.from(cp.rootHash));
    } finally {
      await second.running.stop();
    }
  });
});
