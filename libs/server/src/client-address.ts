import { createContextKey } from "@connectrpc/connect";
import { BlockList, isIP } from "node:net";

/**
 * The connection's peer address, which the server puts into the context
 * values of every call (fast path and connect-node alike) for the pipeline
 * to turn into the call's client address.
 */
export const peerAddressKey = createContextKey<string | undefined>(undefined, { description: "bulwark peer address" });

/** `::ffff:1.2.3.4` → `1.2.3.4`; anything else unchanged. */
export function normalizeAddress(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  return address.length > 7 && (address.startsWith("::ffff:") || address.startsWith("::FFFF:")) && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Forwarding chains longer than this are walked only this far from the right. */
const maxHops = 32;

/**
 * Turns a connection's peer address and the request's forwarding headers
 * into the client's address. Forwarding headers are believed only when the
 * peer is one of the configured trusted proxies (TRUSTED_PROXIES); then the
 * client is the right-most address of the chain that is not itself a
 * trusted proxy — the standard algorithm, which a client cannot defeat by
 * prepending addresses of its own, since every proxy appends the peer it
 * saw. Headers are read in this order: X-Forwarded-For, Forwarded
 * (RFC 7239), X-Real-IP. An entry that is not an address (garbage,
 * `unknown`, an obfuscated identifier) ends the walk at the last hop that
 * was trusted.
 */
export class ClientAddressResolver {
  readonly #trusted: BlockList | undefined;

  constructor(trustedProxies: readonly string[]) {
    if (trustedProxies.length === 0) return;
    this.#trusted = new BlockList();
    for (const cidr of trustedProxies) {
      const [net, bits] = cidr.split("/") as [string, string];
      const family = isIP(net);
      if (family === 0) throw new Error(`TRUSTED_PROXIES: ${cidr} is not a CIDR block`);
      this.#trusted.addSubnet(normalizeAddress(net)!, Number(bits), family === 4 || isIP(normalizeAddress(net)!) === 4 ? "ipv4" : "ipv6");
    }
  }

  /** The client address of a call from `peer` carrying `headers`. */
  resolve(peer: string | undefined, headers: Headers): string | undefined {
    const address = normalizeAddress(peer);
    if (this.#trusted === undefined || address === undefined || !this.#isTrusted(address)) return address;
    const xff = headers.get("x-forwarded-for");
    if (xff !== null) return this.#walk(xff.split(","), address);
    const forwarded = headers.get("forwarded");
    if (forwarded !== null) return this.#walk(forwardedFor(forwarded), address);
    const real = headers.get("x-real-ip");
    if (real !== null) return this.#walk([real], address);
    return address;
  }

  #isTrusted(address: string): boolean {
    return this.#trusted!.check(address, isIP(address) === 4 ? "ipv4" : "ipv6");
  }

  #walk(chain: readonly string[], peer: string): string {
    let last = peer;
    for (let i = chain.length - 1, hops = 0; i >= 0 && hops < maxHops; i--, hops++) {
      const address = parseHop(chain[i]!);
      if (address === undefined) return last;
      if (!this.#isTrusted(address)) return address;
      last = address;
    }
    return last;
  }
}

/** One hop of a forwarding header as an address, without port or brackets. */
function parseHop(raw: string): string | undefined {
  let s = raw.trim();
  if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) s = s.slice(1, -1);
  if (isIP(s) !== 0) return normalizeAddress(s);
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(s);
  if (bracketed !== null && isIP(bracketed[1]!) === 6) return normalizeAddress(bracketed[1]!);
  const v4port = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(s);
  if (v4port !== null && isIP(v4port[1]!) === 4) return v4port[1]!;
  return undefined;
}

/** The `for=` values of a Forwarded header, in order. */
function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(",")) {
    let value: string | undefined;
    for (const pair of element.split(";")) {
      const eq = pair.indexOf("=");
      if (eq > 0 && pair.slice(0, eq).trim().toLowerCase() === "for") value = pair.slice(eq + 1);
    }
    // An element without `for=` says nothing about the client: an
    // unparseable hop, which ends the walk.
    out.push(value ?? "");
  }
  return out;
}
