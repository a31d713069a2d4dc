import * as assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Database, arrayLiteral, migrate, packedBytes } from "../src/index.js";
import { Note } from "./support/note.entity.js";
import { NotesMigration20260101 } from "./support/notes.migration.js";
import { adminUrl, database, dropScratch, scratch } from "./support/scratch.js";

const s = scratch("arrays");
let db: Database;

/** Values that an escaping slip would change or that would break out of the literal. */
const awkward = ["", "plain", 'quote " inside', "back\\slash", "\\x00", "comma, {brace}", "NULL", "ünïcode ✓", "a'b", "line\nbreak"];

describe("arrayLiteral: one parameter for a column of rows", () => {
  before(async () => {
    await migrate({ adminUrl, database, schema: s.schema, ownerRole: s.ownerRole, appRole: s.appRole, migrations: [{ name: "NotesMigration20260101", class: NotesMigration20260101 }] });
    db = await Database.open({ clientUrl: s.appUrl, schema: s.schema, entities: [Note], poolMax: 2 });
  });

  after(async () => {
    await db?.close();
    await dropScratch(s);
  });

  const roundTrip = "select t.s, t.b, t.n, t.d from unnest(?::text[], ?::bytea[], ?::bigint[], ?::timestamptz[]) with ordinality as t(s, b, n, d, i) order by t.i";
  const bytes = awkward.map((v, i) => Buffer.concat([Buffer.from([0, i, 255, 92, 34]), Buffer.from(v)]));
  const numbers = awkward.map((_, i) => (i % 2 === 0 ? i : BigInt(2) ** BigInt(60) + BigInt(i)));
  const dates = awkward.map((_, i) => new Date(Date.UTC(2026, 0, 1 + i, 12, 0, 0, 123)));
  const params = [arrayLiteral(awkward), arrayLiteral(bytes), arrayLiteral(numbers), arrayLiteral(dates)];
  const check = (rows: { s: string; b: Buffer; n: string; d: Date | string }[]) => {
    assert.deepEqual(rows.map((r) => r.s), awkward);
    assert.deepEqual(rows.map((r) => Buffer.from(r.b).toString("hex")), bytes.map((b) => b.toString("hex")));
    assert.deepEqual(rows.map((r) => String(r.n)), numbers.map(String));
    assert.deepEqual(rows.map((r) => new Date(r.d).getTime()), dates.map((d) => d.getTime()));
  };

  test("every value comes back unchanged through a bound parameter (Database.sql)", async () => {
    check(await db.sql((sql) => sql.execute<{ s: string; b: Buffer; n: string; d: Date | string }[]>(roundTrip, params)));
  });

  test("and through em.execute, which inlines its parameters", async () => {
    check(await db.transaction((em) => em.execute<{ s: string; b: Buffer; n: string; d: Date | string }[]>(roundTrip, params)));
  });

  test("packedBytes: every value comes back whole and in order, through both paths", async () => {
    const values = [Buffer.alloc(0), ...bytes, Buffer.alloc(70_000, 7)];
    const packed = packedBytes(values);
    const text = "select substring(?::bytea from t.off for t.len) as b from unnest(?::int[], ?::int[]) with ordinality as t(off, len, i) order by t.i";
    const params = [packed.bytes, packed.offsets, packed.lengths];
    for (const rows of [
      await db.sql((sql) => sql.execute<{ b: Buffer }[]>(text, params)),
      await db.transaction((em) => em.execute<{ b: Buffer }[]>(text, params)),
    ]) {
      assert.deepEqual(rows.map((r) => Buffer.from(r.b).toString("hex")), values.map((v) => v.toString("hex")));
    }
  });

  test("an empty column is an empty array, and a number that is not finite is refused", async () => {
    assert.deepEqual(await db.sql((sql) => sql.execute("select cardinality(?::text[]) as n", [arrayLiteral([])])), [{ n: 0 }]);
    assert.throws(() => arrayLiteral([Number.NaN]), RangeError);
  });
});
