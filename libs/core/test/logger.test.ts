import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { create, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { bulwarkServices, PingRequestSchema } from "@bulwark/contracts";
import { createLogger } from "../src/index.js";

/** A logger whose lines are kept in memory. */
function capture(): { logger: ReturnType<typeof createLogger>; output: () => string } {
  let out = "";
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString("utf8");
      done();
    },
  });
  return { logger: createLogger("test", "info", stream), output: () => out };
}

/**
 * Proto field names that hold a credential, judged here independently of
 * the logger's own rules: tokens of every kind, passwords, secrets, TOTP and
 * recovery codes, the otpauth URI and WebAuthn's signed response.
 */
const sensitiveField = /(^|_)(token|password|secret|code|codes)$|^otpauth_uri$|^response_json$/;

interface Sentinels {
  readonly sensitive: Map<string, string>;
  readonly visible: Map<string, string>;
}

let counter = 0;

/** Fills every string field (and one item of every string list) with a unique sentinel, nested messages included. */
function fill(desc: DescMessage, sentinels: Sentinels, depth = 0, oneofCase = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const field of desc.fields) {
    if (field.oneof !== undefined && field.oneof.fields[oneofCase % field.oneof.fields.length] !== field) continue;
    const value = valueOf(field, desc, sentinels, depth);
    if (value === undefined) continue;
    if (field.oneof !== undefined) init[field.oneof.localName] = { case: field.localName, value };
    else init[field.localName] = value;
  }
  return init;
}

/**
 * pino prints objects nested deeper than its depth limit (5) as "[Object]":
 * an ordinary field is expected in the line only near the top; a credential
 * must be absent at every depth.
 */
const visibleDepth = 1;

function sentinel(field: DescField, owner: DescMessage, sentinels: Sentinels, depth: number): string {
  const s = `SENTINEL${++counter}X`;
  if (sensitiveField.test(field.name)) sentinels.sensitive.set(s, `${owner.typeName}.${field.name}`);
  else if (depth <= visibleDepth) sentinels.visible.set(s, `${owner.typeName}.${field.name}`);
  return s;
}

function valueOf(field: DescField, owner: DescMessage, sentinels: Sentinels, depth: number): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar === ScalarType.STRING ? sentinel(field, owner, sentinels, depth) : undefined;
    case "list":
      if (field.listKind === "scalar") return field.scalar === ScalarType.STRING ? [sentinel(field, owner, sentinels, depth), sentinel(field, owner, sentinels, depth)] : undefined;
      if (field.listKind === "message" && !field.message.typeName.startsWith("google.protobuf.") && depth < 4) return [fill(field.message, sentinels, depth + 1)];
      return undefined;
    case "message":
      return field.message.typeName.startsWith("google.protobuf.") || depth >= 4 ? undefined : fill(field.message, sentinels, depth + 1);
    default:
      return undefined;
  }
}

const messages = (): DescMessage[] => {
  const all = new Map<string, DescMessage>();
  for (const service of bulwarkServices) for (const method of service.methods) for (const m of [method.input, method.output]) all.set(m.typeName, m);
  return [...all.values()];
};

test("no credential of any request or response message reaches a log line, at any depth, while other fields do", () => {
  const direct = capture();
  const nested = capture();
  const sentinels: Sentinels = { sensitive: new Map(), visible: new Map() };
  for (const desc of messages()) {
    const oneofs = Math.max(1, ...desc.oneofs.map((o) => o.fields.length));
    for (let variant = 0; variant < oneofs; variant++) {
      const message = create(desc, fill(desc, sentinels, 0, variant) as never);
      direct.logger.info({ request: message }, "call");
      nested.logger.info({ rpc: desc.typeName, nested: { deeper: [{ message }] } }, "nested call");
    }
  }
  const text = direct.output();
  const all = text + nested.output();
  assert.ok(sentinels.sensitive.size > 20, `only ${sentinels.sensitive.size} sensitive fields were found`);
  const leaked = [...sentinels.sensitive].filter(([s]) => all.includes(s)).map(([, field]) => field);
  assert.deepEqual([...new Set(leaked)], [], "credentials in the log");
  // Every ordinary field shows in the direct line (the nested one may be cut "[too deep]" past 12 levels).
  const hidden = [...sentinels.visible].filter(([s]) => !text.includes(s)).map(([, field]) => field);
  assert.deepEqual([...new Set(hidden)], [], "ordinary fields redacted too");
  assert.ok([...sentinels.visible.values()].some((f) => f.endsWith(".display_name")));
});

test("credential keys in plain objects are redacted whatever their case or depth; status codes are not", () => {
  const { logger, output } = capture();
  logger.info({ a: { b: { c: { refresh_token: "rt-secret-1", accessToken: "at-secret-2", "bulwark-service-assertion": "sa-secret-3" } } }, list: [{ newPassword: "pw-secret-4" }], code: "INVALID_ARGUMENT" }, "x");
  logger.info({ code: "123456", cause: { code: "ECONNRESET" }, other: { code: "ABCDE-12345" } }, "y");
  logger.child({ password: "pw-secret-5" }).info("z");
  const text = output();
  for (const secret of ["rt-secret-1", "at-secret-2", "sa-secret-3", "pw-secret-4", "pw-secret-5", "123456", "ABCDE-12345"]) assert.ok(!text.includes(secret), secret);
  assert.ok(text.includes("INVALID_ARGUMENT"));
  assert.ok(text.includes("ECONNRESET"));
});

test("bytes are logged as their length only", () => {
  const { logger, output } = capture();
  logger.info({ ping: create(PingRequestSchema, { payload: new TextEncoder().encode("BYTES-SENTINEL") }) }, "ping");
  assert.ok(!output().includes("BYTES"));
  assert.match(output(), /\[14 bytes\]/);
});
