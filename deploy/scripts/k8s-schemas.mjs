#!/usr/bin/env node
/**
 * Turns Kubernetes' OpenAPI v2 document (api/openapi-spec/swagger.json of
 * the k8s.io/kubernetes Go module, which `go mod download` fetches from the
 * module proxy: no other internet access needed) into the "standalone
 * strict" JSON schemas kubeconform reads, one file per kind and version,
 * named as kubeconform looks them up (`{{ .ResourceKind }}{{ .KindSuffix }}.json`:
 * deployment-apps-v1.json, service-v1.json, …). The same conversion as
 * openapi2jsonschema's `--stand-alone --strict`: every $ref inlined, unknown
 * fields refused (additionalProperties: false), int-or-string and
 * quantities accepting both forms, and null accepted where Helm renders an
 * empty value.
 *
 *   node deploy/scripts/k8s-schemas.mjs <swagger.json> <out-dir>
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [input, out] = process.argv.slice(2);
if (input === undefined || out === undefined) {
  console.error("usage: k8s-schemas.mjs <swagger.json> <out-dir>");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(input, "utf8"));
const defs = spec.definitions;

/** Definitions that are strings on the wire whatever the swagger type says. */
const special = {
  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": { oneOf: [{ type: "string" }, { type: "integer" }] },
  "io.k8s.apimachinery.pkg.api.resource.Quantity": { oneOf: [{ type: "string" }, { type: "number" }] },
};

function convert(schema, depth, seen) {
  if (schema === null || typeof schema !== "object") return schema;
  if (Array.isArray(schema)) return schema.map((s) => convert(s, depth, seen));
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.replace("#/definitions/", "");
    if (special[name] !== undefined) return special[name];
    // Recursive types (JSONSchemaProps of CRDs) stop being checked below their first repetition.
    if (seen.has(name) || depth > 40) return {};
    return convert(defs[name], depth + 1, new Set([...seen, name]));
  }
  const outSchema = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === "x-kubernetes-group-version-kind" || k.startsWith("x-kubernetes-")) continue;
    if (k === "properties") outSchema.properties = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, convert(s, depth + 1, seen)]));
    else if (k === "items" || k === "additionalProperties") outSchema[k] = typeof v === "object" ? convert(v, depth + 1, seen) : v;
    else outSchema[k] = v;
  }
  if (outSchema.format === "int-or-string") return { oneOf: [{ type: "string" }, { type: "integer" }] };
  if (outSchema.properties !== undefined && outSchema.additionalProperties === undefined) outSchema.additionalProperties = false;
  if (typeof outSchema.type === "string" && depth > 0) outSchema.type = [outSchema.type, "null"];
  return outSchema;
}

mkdirSync(out, { recursive: true });
let written = 0;
for (const [name, def] of Object.entries(defs)) {
  const gvks = def["x-kubernetes-group-version-kind"];
  if (!Array.isArray(gvks)) continue;
  const schema = { $schema: "http://json-schema.org/schema#", ...convert(def, 0, new Set([name])) };
  for (const { group, version, kind } of gvks) {
    const suffix = group === "" ? `-${version}` : `-${group.split(".")[0]}-${version}`;
    writeFileSync(join(out, `${kind.toLowerCase()}${suffix.toLowerCase()}.json`), JSON.stringify(schema));
    written++;
  }
}
console.log(`k8s-schemas: ${written} schemas from ${input}`);
