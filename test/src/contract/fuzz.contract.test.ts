/**
 * Every RPC of every Bulwark service, fed malformed and hostile requests over
 * gRPC and over the Connect protocol, answers with a code that is the
 * caller's to act on — never INTERNAL or UNKNOWN — and the servers still
 * answer health afterwards.
 *
 * The RPCs and their fields come from reflection over the service
 * descriptors in `@bulwark/contracts` (`bulwarkServices`), so a new RPC or a
 * new field is fuzzed without touching this file, and a new service needs
 * one line in `hosts` below. Each request starts from a plausible message
 * (every field filled to satisfy its declared constraints) so that handlers
 * run, and changes one thing: a string of 100 000 characters, a NUL, invalid
 * UTF-8 bytes, an out-of-range enum, 10 000 items in a list, a negative or
 * huge number, a huge or negative duration; plus the empty message and
 * bytes that are not protobuf at all. The credential is the bootstrap
 * operator acting inside a real tenant (`bulwark-tenant`), which passes
 * every authorization rule. DataSubjectParticipant, the one contract every
 * service serves for its own data, is fuzzed on every host that serves it
 * (`participantHosts`), as compliance's own service assertion, the only
 * caller its handlers accept.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { create, getOption, hasOption, ScalarType, toBinary, type DescField, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { bulwarkServices, DataSubjectParticipant, field as fieldRules, Format, health, type FieldRules } from "@bulwark/contracts";
import { currentContext, runAsPlatform, runAsService, serviceAssertionHeader, ServiceAssertions } from "@bulwark/core";
import { keysModule } from "@bulwark/keys";
import { auditModule } from "@bulwark/audit";
import { complianceModule } from "@bulwark/compliance";
import { bootstrapToken, clientFor, startTestService, type Started } from "../support/harness.js";
import { startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";

let mesh: IdentityMesh;
let tenant: TestTenant;
let member: TestUser;
let keys: Started;
let audit: Started;
let compliance: Started;

/** Which started server hosts each proto package: add keys, audit and compliance here. */
const hosts = (): Record<string, Started> => ({
  "bulwark.tenancy.v1": mesh.tenancy,
  "bulwark.identity.v1": mesh.identity,
  "bulwark.keys.v1": keys,
  "bulwark.audit.v1": audit,
  "bulwark.compliance.v1": compliance,
});

/** Every host of DataSubjectParticipant, by the audience compliance's assertion names. */
const participantHosts = (): Record<string, Started> => ({ tenancy: mesh.tenancy, identity: mesh.identity, keys, audit, compliance });

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
  member = await createUser(mesh, tenant);
  keys = await startTestService(keysModule, { prefix: mesh.tenancy.prefix, env: { TENANCY_URL: mesh.tenancy.baseUrl, IDENTITY_URL: mesh.identity.baseUrl } });
  audit = await startTestService(auditModule, { prefix: mesh.tenancy.prefix, env: { TENANCY_URL: mesh.tenancy.baseUrl, IDENTITY_URL: mesh.identity.baseUrl, KEYS_URL: keys.baseUrl } });
  compliance = await startTestService(complianceModule, { prefix: mesh.tenancy.prefix, env: { TENANCY_URL: mesh.tenancy.baseUrl, IDENTITY_URL: mesh.identity.baseUrl, KEYS_URL: keys.baseUrl, AUDIT_URL: audit.baseUrl } });
});

after(async () => {
  await compliance?.stop();
  await audit?.stop();
  await keys?.stop();
  await mesh?.stop();
});

// ---------------------------------------------------------------------------
// Requests: a plausible base message per method, and one change at a time.

type Init = Record<string, unknown>;
type Path = readonly DescField[];

const maxDepth = 4;
const utf8Marker = "Zq8Utf8Mark";

function rulesOf(field: DescField): FieldRules | undefined {
  return hasOption(field, fieldRules) ? getOption(field, fieldRules) : undefined;
}

function isWellKnown(desc: DescMessage): boolean {
  return desc.typeName.startsWith("google.protobuf.");
}

/** Makes the plausible values of each request unique (emails, slugs, names), so cases do not collide. */
let serial = 0;

/** A string that satisfies the field's declared constraints, as far as a generator can. */
function plausibleString(field: DescField): string {
  const s = rulesOf(field)?.string;
  const name = field.name;
  if (s !== undefined && s.in.length > 0) return s.in[0]!;
  let v: string;
  switch (s?.format) {
    case Format.EMAIL:
      v = `pat.example${serial}@example.test`;
      break;
    case Format.SLUG:
      v = name === "tenant_slug" ? tenant.slug : `fuzz-slug-${serial}`;
      break;
    case Format.CIDR:
      v = "10.20.0.0/16";
      break;
    case Format.IP:
      v = "10.20.0.1";
      break;
    case Format.URI:
      v = "https://example.test/fuzz";
      break;
    default:
      if (name === "tenant_slug") v = tenant.slug;
      else if (name === "page_token") v = "";
      else if (name.includes("password")) v = "Velvet-harbor-7261-cobalt-quartz";
      else if (name === "permission" || name === "permissions") v = "identity.users.read";
      else if (name === "role_id" || name === "role_ids") v = "system:member";
      else if (name.endsWith("_json")) v = "{}";
      else if (name === "field") v = "display_name";
      else if (s?.pattern !== undefined) v = "123456";
      else v = `fuzz ${serial}`;
  }
  // Ids get the declared prefix and differ per field (a successor must not be the user itself).
  if (s?.prefix !== undefined && !v.startsWith(s.prefix)) v = `${s.prefix}fuzz${String(field.number).padStart(4, "0")}000000000000000000`;
  if (s?.minLen !== undefined && v.length < s.minLen) v = v.padEnd(s.minLen, "a");
  if (s?.maxLen !== undefined && v.length > s.maxLen) v = v.slice(0, s.maxLen);
  return v;
}

function plausibleInt(field: DescField): number | bigint {
  const r = rulesOf(field)?.int;
  const v = r?.gte !== undefined && r.gte > 0n ? r.gte : 1n;
  return is64(field) ? v : Number(v);
}

function is64(field: DescField): boolean {
  const t = field.fieldKind === "scalar" || field.fieldKind === "list" ? field.scalar : undefined;
  return t === ScalarType.INT64 || t === ScalarType.UINT64 || t === ScalarType.SINT64 || t === ScalarType.FIXED64 || t === ScalarType.SFIXED64;
}

function plausibleEnum(field: DescField): number {
  const values = field.enum?.values ?? [];
  return (values.find((v) => v.number !== 0) ?? values[0])?.number ?? 0;
}

function plausibleScalar(field: DescField): unknown {
  switch (field.scalar) {
    case ScalarType.STRING:
      return plausibleString(field);
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      return new Uint8Array([1, 2, 3]);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return 1;
    default:
      return plausibleInt(field);
  }
}

/**
 * The paths a FieldMask in `parent` names: every field of its message
 * sibling (UpdateSecurityPolicy's `policy`), else every sibling field (the
 * flat update requests) — ids and the mask itself excepted.
 */
function maskPaths(parent: DescMessage): string[] {
  const settable = (m: DescMessage) => m.fields.filter((f) => f.name !== "id" && !f.name.endsWith("_id") && !(f.fieldKind === "message" && f.message.typeName === "google.protobuf.FieldMask") && !(f.fieldKind === "message" && f.message.typeName === "google.protobuf.Timestamp"));
  const target = parent.fields.find((f) => f.fieldKind === "message" && !isWellKnown(f.message));
  return settable(target?.fieldKind === "message" ? target.message : parent).map((f) => f.name);
}

function plausibleDuration(field: DescField | undefined): Init {
  const d = field === undefined ? undefined : rulesOf(field)?.duration;
  const seconds = d?.gteSeconds ?? (d?.lteSeconds !== undefined && d.lteSeconds < 3600n ? d.lteSeconds : 3600n);
  return { seconds };
}

function plausibleMessage(desc: DescMessage, depth: number, parent?: DescMessage, field?: DescField): Init | undefined {
  if (desc.typeName === "google.protobuf.Duration") return plausibleDuration(field);
  if (desc.typeName === "google.protobuf.FieldMask") return { paths: parent === undefined ? [] : maskPaths(parent) };
  if (isWellKnown(desc)) return undefined;
  if (depth > maxDepth) return {};
  const init: Init = {};
  for (const field of desc.fields) {
    if (field.oneof !== undefined && field.oneof.fields[0] !== field) continue;
    const value = plausibleValue(field, depth, desc);
    if (value === undefined) continue;
    if (field.oneof !== undefined) init[field.oneof.localName] = { case: field.localName, value };
    else init[field.localName] = value;
  }
  return init;
}

function plausibleValue(field: DescField, depth: number, parent: DescMessage): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return plausibleScalar(field);
    case "enum":
      return plausibleEnum(field);
    case "message":
      return plausibleMessage(field.message, depth + 1, parent, field);
    case "list":
      if (field.listKind === "scalar") return [plausibleScalar(field)];
      if (field.listKind === "enum") return [plausibleEnum(field)];
      return [plausibleMessage(field.message, depth + 1, parent) ?? {}];
    case "map":
      return undefined;
  }
}

/** Sets `value` at `path` in a copy of `base`. */
function withValue(base: Init, path: Path, value: unknown): Init {
  const copy = structuredClone(base);
  let target: Init = copy;
  for (let i = 0; i < path.length; i++) {
    const field = path[i]!;
    const last = i === path.length - 1;
    if (field.oneof !== undefined) {
      const current = target[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      const next = last ? value : current?.case === field.localName ? current.value : {};
      target[field.oneof.localName] = { case: field.localName, value: next };
      if (!last) target = next as Init;
    } else if (last) {
      target[field.localName] = value;
    } else {
      target[field.localName] ??= {};
      target = target[field.localName] as Init;
    }
  }
  return copy;
}

/** One request to send: a name for the report and the encoded message. */
interface Case {
  readonly name: string;
  readonly bytes: Uint8Array;
}

const intExtremes: Partial<Record<ScalarType, readonly (number | bigint)[]>> = {
  [ScalarType.INT32]: [-1, 2_147_483_647, -2_147_483_648],
  [ScalarType.SINT32]: [-1, 2_147_483_647, -2_147_483_648],
  [ScalarType.SFIXED32]: [-1, 2_147_483_647, -2_147_483_648],
  [ScalarType.UINT32]: [4_294_967_295],
  [ScalarType.FIXED32]: [4_294_967_295],
  [ScalarType.INT64]: [-1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n],
  [ScalarType.SINT64]: [-1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n],
  [ScalarType.SFIXED64]: [-1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n],
  [ScalarType.UINT64]: [18_446_744_073_709_551_615n],
  [ScalarType.FIXED64]: [18_446_744_073_709_551_615n],
  [ScalarType.DOUBLE]: [Number.NaN, Number.POSITIVE_INFINITY, -1e308],
  [ScalarType.FLOAT]: [Number.NaN, Number.POSITIVE_INFINITY, -3e38],
};

/** A deterministic pseudo-random byte source (mulberry32), so failures replay. */
function bytesFrom(seed: number, length: number): Uint8Array {
  let a = seed >>> 0;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

/** Replaces the UTF-8 marker's bytes with bytes that are not UTF-8 (same length, so framing holds). */
function breakUtf8(bytes: Uint8Array): Uint8Array {
  const marker = Buffer.from(utf8Marker);
  const buf = Buffer.from(bytes);
  const at = buf.indexOf(marker);
  if (at >= 0) buf.fill(0xff, at, at + marker.length);
  return buf;
}

function casesFor(method: DescMethod): Case[] {
  const desc = method.input;
  const fresh = (): Init => {
    serial++;
    return plausibleMessage(desc, 0) ?? {};
  };
  const base = fresh();
  const encode = (init: Init): Uint8Array => toBinary(desc, create(desc, init as never));
  const cases: Case[] = [
    { name: "empty message", bytes: new Uint8Array() },
    { name: "plausible message", bytes: encode(base) },
    { name: "garbage bytes (a)", bytes: bytesFrom(method.name.length * 7919, 48) },
    { name: "garbage bytes (b)", bytes: Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, ...bytesFrom(method.name.length, 16)]) },
  ];
  const visit = (msg: DescMessage, path: Path, depth: number): void => {
    for (const field of msg.fields) {
      const at = [...path, field];
      const label = at.map((f) => f.name).join(".");
      switch (field.fieldKind) {
        case "scalar":
          if (field.scalar === ScalarType.STRING) {
            // Each keeps the plausible value's start (an id's prefix), so the change itself is what is judged.
            const plausible = plausibleString(field);
            cases.push({ name: `${label}: 100 000 characters`, bytes: encode(withValue(fresh(), at, plausible + "x".repeat(100_000))) });
            cases.push({ name: `${label}: NUL`, bytes: encode(withValue(fresh(), at, `${plausible}\0`)) });
            cases.push({ name: `${label}: invalid UTF-8`, bytes: breakUtf8(encode(withValue(fresh(), at, plausible + utf8Marker))) });
          } else if (field.scalar === ScalarType.BYTES) {
            cases.push({ name: `${label}: 100 000 bytes`, bytes: encode(withValue(fresh(), at, new Uint8Array(100_000).fill(0x41))) });
          } else {
            for (const v of intExtremes[field.scalar] ?? []) cases.push({ name: `${label}: ${String(v)}`, bytes: encode(withValue(fresh(), at, v)) });
          }
          break;
        case "enum":
          for (const v of [999, -7]) cases.push({ name: `${label}: enum ${v}`, bytes: encode(withValue(fresh(), at, v)) });
          break;
        case "list": {
          const item = field.listKind === "scalar" ? plausibleScalar(field) : field.listKind === "enum" ? plausibleEnum(field) : (plausibleMessage(field.message, depth + 1, msg) ?? {});
          cases.push({ name: `${label}: 10 000 items`, bytes: encode(withValue(fresh(), at, Array.from({ length: 10_000 }, (_, i) => (typeof item === "string" && field.listKind === "scalar" && rulesOf(field)?.string?.format === undefined ? `${item}${i}` : item)))) });
          break;
        }
        case "message":
          if (field.message.typeName === "google.protobuf.Duration") {
            for (const seconds of [-1n, 315_576_000_000n, 9_223_372_036_854_775_807n]) cases.push({ name: `${label}: ${seconds} s`, bytes: encode(withValue(fresh(), at, { seconds })) });
          } else if (!isWellKnown(field.message) && depth < maxDepth) {
            visit(field.message, at, depth + 1);
          }
          break;
        case "map":
          break;
      }
    }
  };
  visit(desc, [], 0);
  return cases;
}

// ---------------------------------------------------------------------------
// Sending: raw bytes over gRPC (grpc-js) and over Connect (HTTP/1.1 POST).

let addressCounter = 0;
/** A client address per call (the harness trusts 127.0.0.1 as a proxy), so no sign-in counter fills up and hides a handler. */
function nextAddress(): string {
  addressCounter++;
  return `10.${(addressCounter >> 16) & 255}.${(addressCounter >> 8) & 255}.${addressCounter & 255}`;
}

/** The credential a method's requests carry (see `credentialFor`). */
type Credential = Record<string, string>;

function headersFor(credential: Credential): Record<string, string> {
  return { ...credential, "x-forwarded-for": nextAddress() };
}

/** The code name of a gRPC status number, as Connect spells it. */
const grpcNames = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];

function callGrpc(client: grpc.Client, path: string, bytes: Uint8Array, credential: Credential): Promise<{ code: string; message: string }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headersFor(credential))) md.set(k, v);
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(bytes), md, { deadline: Date.now() + 60_000 }, (err) => {
      resolve(err === null ? { code: "ok", message: "" } : { code: grpcNames[err.code] ?? String(err.code), message: err.details });
    });
  });
}

async function callConnect(baseUrl: string, path: string, bytes: Uint8Array, credential: Credential, streaming = false): Promise<{ code: string; message: string }> {
  if (streaming) return callConnectStream(baseUrl, path, bytes, credential);
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...headersFor(credential) }, body: bytes });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status === 200) return { code: "ok", message: "" };
  try {
    const err = JSON.parse(body.toString("utf8")) as { code?: string; message?: string };
    return { code: err.code ?? `http ${res.status}`, message: err.message ?? "" };
  } catch {
    return { code: `http ${res.status}`, message: body.toString("utf8").slice(0, 200) };
  }
}

/** A server-streaming call over the Connect protocol (enveloped messages); its error is in the end-of-stream message. */
async function callConnectStream(baseUrl: string, path: string, bytes: Uint8Array, credential: Credential): Promise<{ code: string; message: string }> {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(bytes.length, 1);
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/connect+proto", "connect-protocol-version": "1", ...headersFor(credential) }, body: Buffer.concat([head, bytes]) });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) return { code: `http ${res.status}`, message: body.toString("utf8").slice(0, 200) };
  for (let at = 0; at + 5 <= body.length; ) {
    const flags = body[at]!;
    const length = body.readUInt32BE(at + 1);
    if ((flags & 2) !== 0) {
      const end = JSON.parse(body.subarray(at + 5, at + 5 + length).toString("utf8")) as { error?: { code?: string; message?: string } };
      return end.error === undefined ? { code: "ok", message: "" } : { code: end.error.code ?? "unknown", message: end.error.message ?? "" };
    }
    at += 5 + length;
  }
  return { code: "unknown", message: "no end of stream" };
}

/**
 * The bootstrap operator inside the test tenant passes every authorization
 * rule, but a handler that acts on the caller's own account (sessions,
 * MFA, passkeys) needs a user: when the plausible request is refused for
 * want of one, the method's requests carry a fresh session of a member.
 */
async function credentialFor(client: grpc.Client, path: string, plausible: Uint8Array): Promise<Credential> {
  const operator = { authorization: `Bearer ${bootstrapToken}`, "bulwark-tenant": tenant.id };
  const r = await callGrpc(client, path, plausible, operator);
  if (r.code !== "unauthenticated" || r.message !== "a valid credential is required") return operator;
  const tokens = await signIn(mesh, member);
  return { authorization: `Bearer ${tokens.accessToken}` };
}

const complianceAssertions = ServiceAssertions.development("compliance");

/** Compliance's own platform-scope service assertion for `audience`, as its saga calls a participant (fresh per call: it lives 30 s). */
async function asCompliance(audience: string): Promise<Credential> {
  const token = await runAsService("compliance", undefined, () => runAsPlatform("fuzzing the participant contract", () => complianceAssertions.sign(currentContext(), audience)));
  return { [serviceAssertionHeader]: token };
}

/** Codes that say the server, not the caller, is at fault. */
const serverFaults = new Set(["internal", "unknown", "data_loss"]);

/** Where a fuzz run records what went wrong and how much it sent. */
interface FuzzRun {
  readonly faults: string[];
  readonly seen: Map<string, number>;
  sent: number;
}

/** Sends every case of every method of `service` to `host` over gRPC and Connect, recording server faults in `run`. */
async function fuzzService(run: FuzzRun, service: DescService, host: Started, client: grpc.Client, credentialOf: (path: string, plausible: Uint8Array) => Promise<Credential>, on = ""): Promise<void> {
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const cases = casesFor(method);
    for (let i = 0; i < cases.length; i += 6) {
      const credential = await credentialOf(path, cases[1]!.bytes);
      await Promise.all(
        cases.slice(i, i + 6).map(async (c) => {
          const [overGrpc, overConnect] = await Promise.all([callGrpc(client, path, c.bytes, credential), callConnect(host.baseUrl, path, c.bytes, credential, method.methodKind === "server_streaming")]);
          run.sent += 2;
          for (const [protocol, r] of [["grpc", overGrpc], ["connect", overConnect]] as const) {
            const key = c.name === "plausible message" ? `${method.name}${on} BASE ${r.code} ${r.message}` : `${method.name}${on} ${r.code}`;
            run.seen.set(key, (run.seen.get(key) ?? 0) + 1);
            if (serverFaults.has(r.code) || r.code.startsWith("http ")) run.faults.push(`${service.typeName}/${method.name}${on} over ${protocol}, ${c.name}: ${r.code} ${r.message}`);
          }
        }),
      );
    }
  }
}

function grpcClientOf(host: Started): grpc.Client {
  return new grpc.Client(host.baseUrl.replace("http://", ""), grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 16 * 1024 * 1024 });
}

async function assertHostsServing(): Promise<void> {
  for (const host of Object.values(hosts())) {
    const res = await clientFor(health.Health, host.baseUrl).check({ service: "" });
    assert.equal(res.status, health.HealthCheckResponse_ServingStatus.SERVING);
  }
}

test("every RPC of every service answers malformed requests without INTERNAL or UNKNOWN, over gRPC and Connect", { timeout: 900_000 }, async () => {
  const byPackage = hosts();
  const unhosted = bulwarkServices.filter((s: DescService) => byPackage[s.file.proto.package ?? ""] === undefined).map((s) => s.typeName);
  assert.deepEqual(unhosted, [], "every service in bulwarkServices needs a host in this test");
  const grpcClients = new Map<Started, grpc.Client>();
  const run: FuzzRun = { faults: [], seen: new Map(), sent: 0 };
  try {
    for (const service of bulwarkServices) {
      const host = byPackage[service.file.proto.package ?? ""]!;
      let client = grpcClients.get(host);
      if (client === undefined) {
        client = grpcClientOf(host);
        grpcClients.set(host, client);
      }
      const credentials = new Map<string, Credential>();
      await fuzzService(run, service, host, client, async (path, plausible) => {
        let credential = credentials.get(path);
        if (credential === undefined) {
          credential = await credentialFor(client, path, plausible);
          credentials.set(path, credential);
        }
        return credential;
      });
    }
  } finally {
    for (const c of grpcClients.values()) c.close();
  }
  // FUZZ_REPORT=1 prints what each method answered (BASE: the plausible request), to see how deep the cases reach.
  if (process.env["FUZZ_REPORT"] !== undefined) process.stderr.write(`${[...run.seen].map(([k, n]) => `${k} ×${n}`).join("\n")}\n`);
  assert.ok(run.sent > 1000, `only ${run.sent} requests were sent`);
  assert.deepEqual(run.faults, [], `${run.faults.length} of ${run.sent} requests answered with a server fault`);
  await assertHostsServing();
});

/**
 * The participant contract refuses every caller but compliance before it
 * reads a request, so the test above reaches only its authorization. Here
 * each service that serves it is fuzzed as compliance calls it.
 */
test("DataSubjectParticipant on every service answers compliance's malformed requests without INTERNAL or UNKNOWN", { timeout: 600_000 }, async () => {
  const run: FuzzRun = { faults: [], seen: new Map(), sent: 0 };
  for (const [audience, host] of Object.entries(participantHosts())) {
    const client = grpcClientOf(host);
    try {
      await fuzzService(run, DataSubjectParticipant, host, client, () => asCompliance(audience), ` on ${audience}`);
    } finally {
      client.close();
    }
  }
  if (process.env["FUZZ_REPORT"] !== undefined) process.stderr.write(`${[...run.seen].map(([k, n]) => `${k} ×${n}`).join("\n")}\n`);
  // The handlers were reached on every host: each method's plausible request is answered, not refused for the caller.
  for (const audience of Object.keys(participantHosts())) {
    for (const m of DataSubjectParticipant.methods) {
      const base = [...run.seen.keys()].find((k) => k.startsWith(`${m.name} on ${audience} BASE `));
      assert.ok(base !== undefined && !/ (permission_denied|unauthenticated) /.test(base), `${m.name} on ${audience}: ${base ?? "not called"}`);
    }
  }
  assert.ok(run.sent > 200, `only ${run.sent} requests were sent`);
  assert.deepEqual(run.faults, [], `${run.faults.length} of ${run.sent} requests answered with a server fault`);
  await assertHostsServing();
});
