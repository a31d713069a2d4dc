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

/** Byte strings packed for one bytea parameter (see `packedBytes`). */
export interface PackedBytes {
  /** Every value, one after the other. */
  readonly bytes: Buffer;
  /** `int[]` literal of each value's 1-based offset in `bytes`. */
  readonly offsets: string;
  /** `int[]` literal of each value's length. */
  readonly lengths: string;
}

/**
 * Byte strings as one bytea parameter beside two `int[]` ones, for
 * `substring(?::bytea from t.off for t.len)` with `unnest(?::int[],
 * ?::int[]) as t(off, len)`: the bytes travel as they are (a bound Buffer
 * goes in binary), where an array literal would spell them out in hex,
 * twice their size, for Postgres to parse back.
 */
export function packedBytes(values: readonly Uint8Array[]): PackedBytes {
  const offsets = new Array<number>(values.length);
  const lengths = new Array<number>(values.length);
  let at = 1;
  for (let i = 0; i < values.length; i++) {
    offsets[i] = at;
    lengths[i] = values[i]!.byteLength;
    at += lengths[i]!;
  }
  return { bytes: Buffer.concat(values), offsets: arrayLiteral(offsets), lengths: arrayLiteral(lengths) };
}
