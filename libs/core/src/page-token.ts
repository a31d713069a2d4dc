import { invalidArgument } from "./errors.js";

/**
 * Where the next page of a listing starts: keyset pagination on (create
 * time, id), newest first, the same for every List RPC of the mesh.
 */
export interface Cursor {
  readonly createdAt: Date;
  readonly id: string;
  /** The filters the listing was started with; a token is valid only with them. */
  readonly filter: string;
}

/** An opaque, URL-safe page token. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify({ t: c.createdAt.toISOString(), i: c.id, f: c.filter })).toString("base64url");
}

/**
 * Decodes a page token whose ids carry `idPrefix` (`ten_`, `usr_`);
 * INVALID_ARGUMENT if it is not one of ours or the filters changed.
 */
export function decodeCursor(token: string, filter: string, idPrefix: string): Cursor {
  try {
    const raw = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { t?: unknown; i?: unknown; f?: unknown };
    const createdAt = new Date(String(raw.t));
    if (typeof raw.i !== "string" || !raw.i.startsWith(idPrefix) || Number.isNaN(createdAt.getTime())) throw new Error("malformed");
    if (raw.f !== filter) throw invalidArgument("page_token", "was issued for other filters");
    return { createdAt, id: raw.i, filter };
  } catch (err) {
    if (err instanceof Error && err.name === "ConnectError") throw err;
    throw invalidArgument("page_token", "is not a valid page token");
  }
}
