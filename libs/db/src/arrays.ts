/** A value an array parameter may hold. */
export type ArrayElement = string | number | bigint | Date | Uint8Array;

/**
 * A Postgres array literal (`{…}`) of `values`, for a `?::type[]`
 * parameter: one parameter for a column of any number of rows (`insert …
 * select … from unnest(?::text[], ?::bytea[])`), so a statement's text does
 * not grow with its rows. A string, not a JS array, because
 * `em.execute` inlines parameters and would spread an array into a list,
 * while `Database.sql` binds it; both take the literal. Bytes are written
 * in bytea's hex form, dates in ISO 8601 (UTC).
 */
export function arrayLiteral(values: readonly ArrayElement[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (typeof v === "number" || typeof v === "bigint") {
      if (typeof v === "number" && !Number.isFinite(v)) throw new RangeError("an array parameter holds a number that is not finite");
      parts[i] = String(v);
      continue;
    }
    const s = v instanceof Date ? v.toISOString() : v instanceof Uint8Array ? `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex")}` : v;
    parts[i] = `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  }
  return `{${parts.join(",")}}`;
}
