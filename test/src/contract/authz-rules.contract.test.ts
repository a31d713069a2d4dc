/**
 * Every RPC of the mesh declares its authorization rule in proto, and one
 * interceptor enforces it. This file fails if any RPC lacks a rule, if a rule
 * is malformed, or if a rule and the RPC's "Required permissions:" comment
 * disagree — so the comment callers read is the rule the server enforces.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { create, createFileRegistry, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { bulwarkServices, DiagnosticsService, TenancyService } from "@bulwark/contracts";
import { authorize, BootstrapCredentialResolver, ruleOf, type Principal } from "@bulwark/core";

/** Every service a Bulwark server hosts, with the proto file that declares it. */
const services: readonly DescService[] = [...bulwarkServices, DiagnosticsService];
const methods: readonly DescMethod[] = services.flatMap((s) => s.methods);
const permissionPattern = /^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/;

/** `bulwark.tenancy.v1` → `tenancy`: the service a permission must belong to. */
function domainOf(service: DescService): string {
  const parts = service.typeName.split(".");
  assert.equal(parts[0], "bulwark", `${service.typeName} is not in the bulwark.* namespace`);
  return parts[1]!;
}

/** The comment block above each `rpc` in a proto file, by method name. */
function rpcComments(service: DescService): Map<string, string> {
  const path = new URL(`../../../proto/${service.file.proto.name}`, import.meta.url);
  const lines = readFileSync(path, "utf8").split("\n");
  const comments = new Map<string, string>();
  lines.forEach((line, i) => {
    const m = /^\s*rpc\s+(\w+)\s*\(/.exec(line);
    if (m === null) return;
    const block: string[] = [];
    for (let j = i - 1; j >= 0 && /^\s*\/\//.test(lines[j]!); j--) block.unshift(lines[j]!.replace(/^\s*\/\/\s?/, ""));
    comments.set(m[1]!, block.join(" "));
  });
  return comments;
}

describe("authorization rules", () => {
  test("bulwarkServices lists TenancyService", () => {
    assert.ok(bulwarkServices.includes(TenancyService));
  });

  for (const method of methods) {
    const rpc = `${method.parent.typeName}/${method.name}`;

    test(`${rpc} declares a well-formed authorization rule`, () => {
      const rule = ruleOf(method);
      assert.ok(rule !== undefined, `${rpc} has no (bulwark.authz.v1.rule), or a contradictory one`);
      if (rule.public) {
        assert.equal(rule.permission, "", "a public rule names no permission");
        assert.equal(rule.platformOnly, false, "a public rule cannot be platform-only");
      } else {
        assert.match(rule.permission, permissionPattern, "permissions are <service>.<resource>.<action>");
        assert.equal(rule.permission.split(".")[0], domainOf(method.parent), `the permission belongs to the ${domainOf(method.parent)} service`);
      }
    });

    test(`${rpc} documents in its comment exactly the permission its rule requires`, () => {
      const comment = rpcComments(method.parent).get(method.name);
      assert.ok(comment !== undefined, `no comment above rpc ${method.name}`);
      const documented = /Required permissions:\s*(.+?)\.(?:\s|$)/.exec(comment)?.[1];
      assert.ok(documented !== undefined, `the comment of ${method.name} has no "Required permissions:" line`);
      const rule = ruleOf(method)!;
      if (rule.public) {
        assert.match(documented, /^none \(public\b/);
      } else {
        assert.equal(documented.split(" ")[0], rule.permission);
        assert.equal(/\(platform operators only\)/.test(documented), rule.platformOnly, `platform-only in the comment and in the rule agree for ${method.name}`);
      }
      assert.match(comment, /Errors:/, `the comment of ${method.name} lists its error codes`);
    });
  }

  test("TenancyService keeps the rules other services rely on", () => {
    const rules = Object.fromEntries(TenancyService.methods.map((m) => [m.name, ruleOf(m)]));
    assert.deepEqual(rules["ResolveTenant"], { permission: "", public: true, platformOnly: false });
    assert.deepEqual(rules["GetTenant"], { permission: "tenancy.tenants.read", public: false, platformOnly: false });
    assert.deepEqual(rules["GetSecurityPolicy"], { permission: "tenancy.policies.read", public: false, platformOnly: false });
    for (const name of ["CreateTenant", "ListTenants", "SuspendTenant", "ReactivateTenant"]) assert.equal(rules[name]?.platformOnly, true, `${name} is platform-only`);
    for (const name of ["UpdateTenant", "CloseTenant", "UpdateSecurityPolicy"]) assert.equal(rules[name]?.platformOnly, false, `${name} is open to tenant principals`);
  });

  test("a method without a rule is refused even to the bootstrap operator", () => {
    const file = create(FileDescriptorProtoSchema, {
      name: "contract/norule/v1/norule.proto",
      package: "contract.norule.v1",
      syntax: "proto3",
      messageType: [{ name: "DoRequest" }, { name: "DoResponse" }],
      service: [{ name: "NoRuleService", method: [{ name: "Do", inputType: ".contract.norule.v1.DoRequest", outputType: ".contract.norule.v1.DoResponse" }] }],
    });
    const method = createFileRegistry(file, () => undefined).getService("contract.norule.v1.NoRuleService")!.methods[0]!;
    assert.equal(ruleOf(method), undefined);
    const operator: Principal = BootstrapCredentialResolver.principal;
    assert.throws(() => authorize(method, operator), (err: unknown) => err instanceof ConnectError && err.code === Code.PermissionDenied);
  });
});
