import * as assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runAsPlatform, runInTenant, runWithContext } from "@bulwark/core";
import { Database, migrate } from "../src/index.js";
import { Note } from "./support/note.entity.js";
import { NotesMigration20260101 } from "./support/notes.migration.js";
import { adminQuery, adminUrl, database, dropScratch, scratch } from "./support/scratch.js";

const s = scratch("rls");
const spec = { adminUrl, database, schema: s.schema, ownerRole: s.ownerRole, appRole: s.appRole };
const migrations = [{ name: "NotesMigration20260101", class: NotesMigration20260101 }];
let db: Database;

describe("row-level security on a tenant-owned table", () => {
  before(async () => {
    assert.deepEqual(await migrate({ ...spec, migrations }), ["NotesMigration20260101"]);
    db = await Database.open({ clientUrl: s.appUrl, schema: s.schema, entities: [Note], poolMax: 4 });
    await runInTenant("ten_a", () => db.transaction(async (em) => em.persistAndFlush(em.create(Note, { id: "n1", tenantId: "ten_a", body: "a1" }))));
    await runInTenant("ten_b", () => db.transaction(async (em) => em.persistAndFlush(em.create(Note, { id: "n2", tenantId: "ten_b", body: "b1" }))));
  });

  after(async () => {
    await db?.close();
    await dropScratch(s);
  });

  test("migrating again is a no-op and provisioning is idempotent", async () => {
    assert.deepEqual(await migrate({ ...spec, migrations }), []);
  });

  test("an unfiltered find in tenant A returns only A's rows", async () => {
    const notes = await runInTenant("ten_a", () => db.transaction((em) => em.find(Note, {})));
    assert.deepEqual(notes.map((n) => n.id), ["n1"]);
  });

  test("writing a row of tenant B while scoped to tenant A is refused", async () => {
    await assert.rejects(
      runInTenant("ten_a", () => db.transaction(async (em) => em.persistAndFlush(em.create(Note, { id: "n3", tenantId: "ten_b", body: "x" })))),
      /row-level security/,
    );
    const all = await runAsPlatform("test: verify", () => db.transaction((em) => em.count(Note, { id: "n3" })));
    assert.equal(all, 0);
  });

  test("updating a row into another tenant is refused", async () => {
    await assert.rejects(
      runInTenant("ten_a", () =>
        db.transaction(async (em) => {
          const n = await em.findOneOrFail(Note, { id: "n1" });
          n.tenantId = "ten_b";
          await em.flush();
        }),
      ),
      /row-level security/,
    );
  });

  test("outside any tenant or platform scope the table reads empty and refuses writes", async () => {
    assert.equal(await db.transaction((em) => em.count(Note, {})), 0);
    assert.equal(await runWithContext({ requestId: "req_test" }, () => db.transaction((em) => em.count(Note, {}))), 0);
    await assert.rejects(db.transaction(async (em) => em.persistAndFlush(em.create(Note, { id: "n4", tenantId: "ten_a", body: "x" }))));
  });

  test("the tenant setting does not leak to the next transaction on a pooled connection", async () => {
    await runInTenant("ten_a", () => db.transaction((em) => em.count(Note, {})));
    const counts = await Promise.all(Array.from({ length: 8 }, () => db.transaction((em) => em.count(Note, {}))));
    assert.deepEqual(counts, Array(8).fill(0));
  });

  test("the platform scope sees every tenant", async () => {
    const notes = await runAsPlatform("test: list all notes", () => db.transaction((em) => em.find(Note, {}, { orderBy: { id: "asc" } })));
    assert.deepEqual(notes.map((n) => n.tenantId), ["ten_a", "ten_b"]);
  });

  test("the app role owns no table and cannot bypass RLS", async () => {
    const owned = await adminQuery("select tablename from pg_tables where schemaname = $1 and tableowner = $2", [s.schema, s.appRole]);
    assert.deepEqual(owned, []);
    const notesOwner = await adminQuery<{ tableowner: string }>("select tableowner from pg_tables where schemaname = $1 and tablename = 'notes'", [s.schema]);
    assert.equal(notesOwner[0]?.tableowner, s.ownerRole);
    const [role] = await adminQuery<{ rolbypassrls: boolean; rolsuper: boolean }>("select rolbypassrls, rolsuper from pg_roles where rolname = $1", [s.appRole]);
    assert.deepEqual(role, { rolbypassrls: false, rolsuper: false });
  });

  test("Database.sql is scoped like transaction: one tenant's rows, every row in the platform scope, none outside a scope", async () => {
    const ids = (rows: { id: string }[]) => rows.map((r) => r.id).sort();
    assert.deepEqual(ids(await runInTenant("ten_a", () => db.sql((sql) => sql.execute<{ id: string }[]>("select id from notes")))), ["n1"]);
    assert.deepEqual(ids(await runAsPlatform("test: list all notes", () => db.sql((sql) => sql.execute<{ id: string }[]>("select id from notes")))), ["n1", "n2"]);
    assert.deepEqual(await db.sql((sql) => sql.execute<{ id: string }[]>("select id from notes")), []);
    await assert.rejects(runInTenant("ten_a", () => db.sql((sql) => sql.execute("insert into notes (id, tenant_id, body) values (?, ?, ?)", ["n5", "ten_b", "x"]))), /row-level security/);
  });

  test("Database.sql rolls back on an error, and its scope and settings do not outlive the transaction", async () => {
    await assert.rejects(
      runInTenant("ten_a", () =>
        db.sql(async (sql) => {
          await sql.execute("insert into notes (id, tenant_id, body) values (?, ?, ?)", ["n6", "ten_a", "x"]);
          throw new Error("changed my mind");
        }),
      ),
      /changed my mind/,
    );
    assert.equal((await runAsPlatform("test: verify", () => db.sql((sql) => sql.execute<{ n: number }[]>("select count(*)::int as n from notes where id = ?", ["n6"]))))[0]?.n, 0);
    await runInTenant("ten_a", () => db.sql((sql) => sql.execute("select 1"), { settings: { "app.counters": "on" } }));
    const after = await Promise.all(Array.from({ length: 8 }, () => db.sql((sql) => sql.execute<{ t: string | null; c: string | null }[]>("select current_setting('app.tenant_id', true) as t, current_setting('app.counters', true) as c"))));
    for (const [row] of after) assert.ok((row?.t ?? "") === "" && (row?.c ?? "") === "", JSON.stringify(row));
  });

  test("Database.sql refuses to set the scope itself through settings", async () => {
    await assert.rejects(db.sql((sql) => sql.execute("select 1"), { settings: { "app.platform": "on" } }), /not a transaction setting/);
    await assert.rejects(db.sql((sql) => sql.execute("select 1"), { settings: { "search_path": "public" } }), /not a transaction setting/);
  });

  test("ping reports a reachable database", async () => {
    assert.equal(await db.ping(), true);
  });

  test("open fails fast with a clear error when Postgres is unreachable", async () => {
    await assert.rejects(
      Database.open({ clientUrl: "postgres://nobody:secret@127.0.0.1:1/none", schema: "x", entities: [Note] }),
      (err: Error) => err.name === "DatabaseUnavailableError" && !err.message.includes("secret"),
    );
  });
});
