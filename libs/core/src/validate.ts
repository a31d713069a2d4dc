import { getOption, hasOption, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { field as fieldExtension, Format, type FieldRules } from "@bulwark/contracts";
import { isIP } from "node:net";
import { invalidArgument } from "./errors.js";

/**
 * Checks a request against the `(bulwark.validate.v1.field)` constraints of
 * its proto, recursing into set message fields. The first violation throws
 * INVALID_ARGUMENT whose message starts with the field's path, e.g.
 * `policy.ip_allowlist[2]: must be a CIDR block`. One mechanism for every
 * RPC: the server applies it before any handler runs. Beyond the declared
 * constraints, every string anywhere in a request — nested, repeated, map
 * keys and values — must be well-formed Unicode without NUL characters:
 * Postgres refuses NUL in text (the call would fail as INTERNAL deep in a
 * handler), and no field of ours has a use for one.
 */
export function validateMessage(schema: DescMessage, message: Message): void {
  walk(reflect(schema, message), "");
}

const rulesCache = new WeakMap<DescField, FieldRules | null>();

function rulesOf(field: DescField): FieldRules | null {
  let rules = rulesCache.get(field);
  if (rules === undefined) {
    rules = hasOption(field, fieldExtension) ? getOption(field, fieldExtension) : null;
    rulesCache.set(field, rules);
  }
  return rules;
}

function walk(msg: ReflectMessage, prefix: string): void {
  for (const field of msg.fields) {
    const path = prefix + field.name;
    const rules = rulesOf(field);
    const set = msg.isSet(field);
    if (rules?.required === true && !set) throw invalidArgument(path, "is required");
    if (!set) continue;
    switch (field.fieldKind) {
      case "scalar":
        checkScalar(path, msg.get(field), rules);
        break;
      case "enum":
        checkEnum(path, field, msg.get(field) as number, rules);
        break;
      case "message": {
        const value = msg.get(field) as ReflectMessage;
        checkMessage(path, value, rules);
        break;
      }
      case "list": {
        const list = msg.get(field) as unknown as { size: number; [Symbol.iterator](): Iterator<unknown> };
        const rr = rules?.repeated;
        if (rr?.maxItems !== undefined && list.size > rr.maxItems) throw invalidArgument(path, `must have at most ${rr.maxItems} items`);
        const seen = new Set<unknown>();
        let i = 0;
        for (const item of list) {
          const itemPath = `${path}[${i}]`;
          if (rr?.unique === true) {
            if (seen.has(item)) throw invalidArgument(itemPath, "duplicates an earlier item");
            seen.add(item);
          }
          if (field.listKind === "scalar") checkScalar(itemPath, item, rules);
          else if (field.listKind === "message") walk(item as ReflectMessage, `${itemPath}.`);
          else if (field.listKind === "enum") checkEnum(itemPath, field, item as number, rules);
          i++;
        }
        break;
      }
      case "map": {
        const map = msg.get(field) as unknown as { [Symbol.iterator](): Iterator<[unknown, unknown]> };
        for (const [key, value] of map) {
          const entryPath = `${path}[${JSON.stringify(typeof key === "string" ? key.slice(0, 64) : String(key))}]`;
          if (typeof key === "string") checkText(`${path} key`, key);
          if (field.mapKind === "scalar") checkScalar(entryPath, value, null);
          else if (field.mapKind === "message") checkMessage(entryPath, value as ReflectMessage, null);
        }
        break;
      }
    }
  }
}

function checkMessage(path: string, value: ReflectMessage, rules: FieldRules | null): void {
  const typeName = value.desc.typeName;
  if (typeName === "google.protobuf.Duration") {
    const seconds = Number(value.message["seconds" as keyof Message] ?? 0n);
    const nanos = Number(value.message["nanos" as keyof Message] ?? 0);
    if (nanos < 0 || nanos > 999_999_999 || (seconds > 0 && nanos < 0)) throw invalidArgument(path, "is not a valid duration");
    const d = rules?.duration;
    if (d?.gteSeconds !== undefined && seconds < Number(d.gteSeconds)) throw invalidArgument(path, `must be at least ${d.gteSeconds}s`);
    if (d?.lteSeconds !== undefined && seconds + (nanos > 0 ? 1 : 0) > Number(d.lteSeconds)) throw invalidArgument(path, `must be at most ${d.lteSeconds}s`);
    return;
  }
  if (typeName === "google.protobuf.FieldMask") {
    const paths = value.message["paths" as keyof Message] as unknown as string[];
    if (rules?.required === true && paths.length === 0) throw invalidArgument(path, "must name at least one field");
    for (const p of paths) if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/.test(p)) throw invalidArgument(path, `"${p.slice(0, 64)}" is not a field path`);
    return;
  }
  if (typeName.startsWith("google.protobuf.")) return;
  walk(value, `${path}.`);
}

function checkEnum(path: string, field: DescField, value: number, rules: FieldRules | null): void {
  if (rules?.enum?.definedOnly !== true) return;
  const desc = field.enum;
  if (desc !== undefined && !desc.values.some((v) => v.number === value)) throw invalidArgument(path, `${value} is not a defined value`);
}

const slug = /^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$/;
const email = /^[^\s@<>()[\]\\,;:"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

/** Every string of a request: well-formed Unicode, no NUL. */
function checkText(path: string, value: string): void {
  if (!value.isWellFormed()) throw invalidArgument(path, "is not valid UTF-8");
  if (value.includes("\0")) throw invalidArgument(path, "must not contain NUL characters");
}

function checkScalar(path: string, value: unknown, rules: FieldRules | null): void {
  if (typeof value === "string") {
    checkText(path, value);
    const s = rules?.string;
    if (s === undefined) return;
    const length = [...value].length;
    if (s.minLen !== undefined && length < s.minLen) throw invalidArgument(path, `must be at least ${s.minLen} characters`);
    if (s.maxLen !== undefined && length > s.maxLen) throw invalidArgument(path, `must be at most ${s.maxLen} characters`);
    if (s.prefix !== undefined && !value.startsWith(s.prefix)) throw invalidArgument(path, `must start with "${s.prefix}"`);
    if (s.in.length > 0 && !s.in.includes(value)) throw invalidArgument(path, `must be one of ${s.in.join(", ")}`);
    if (s.pattern !== undefined && !compiled(s.pattern).test(value)) throw invalidArgument(path, "has an invalid format");
    checkFormat(path, value, s.format);
    return;
  }
  if (typeof value === "number" || typeof value === "bigint") {
    const r = rules?.int;
    if (r === undefined) return;
    if (r.gte !== undefined && BigInt(value) < r.gte) throw invalidArgument(path, `must be at least ${r.gte}`);
    if (r.lte !== undefined && BigInt(value) > r.lte) throw invalidArgument(path, `must be at most ${r.lte}`);
    return;
  }
  if (value instanceof Uint8Array) {
    const max = rules?.bytes?.maxLen;
    if (max !== undefined && value.length > max) throw invalidArgument(path, `must be at most ${max} bytes`);
  }
}

const patterns = new Map<string, RegExp>();
function compiled(pattern: string): RegExp {
  let re = patterns.get(pattern);
  if (re === undefined) {
    re = new RegExp(`^(?:${pattern})$`, "u");
    patterns.set(pattern, re);
  }
  return re;
}

function checkFormat(path: string, value: string, format: Format): void {
  switch (format) {
    case Format.UNSPECIFIED:
      return;
    case Format.SLUG:
      if (!slug.test(value)) throw invalidArgument(path, "must be lower-case letters, digits and single hyphens");
      return;
    case Format.EMAIL:
      if (!email.test(value)) throw invalidArgument(path, "must be an email address");
      return;
    case Format.IP:
      if (isIP(value) === 0) throw invalidArgument(path, "must be an IP address");
      return;
    case Format.CIDR:
      if (!isCidr(value)) throw invalidArgument(path, "must be a CIDR block such as 10.0.0.0/8");
      return;
    case Format.URI:
      if (!isHttpUri(value)) throw invalidArgument(path, "must be an absolute http(s) URI");
      return;
  }
}

/** True for what FORMAT_EMAIL accepts (services that check an address outside a validated field). */
export function isEmailAddress(value: string): boolean {
  return value.length <= 254 && email.test(value);
}

/** True for an IPv4 or IPv6 CIDR block with a prefix length in range. */
export function isCidr(value: string): boolean {
  const slash = value.indexOf("/");
  if (slash < 0) return false;
  const ip = value.slice(0, slash);
  const bits = value.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function isHttpUri(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === "https:" || u.protocol === "http:";
  } catch {
    return false;
  }
}

