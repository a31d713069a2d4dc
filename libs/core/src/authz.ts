import { getOption, hasOption, type DescMethod } from "@bufbuild/protobuf";
import { rule as ruleExtension, type Rule } from "@bulwark/contracts";
import { hasPermission, isPlatformPrincipal, type Principal } from "./context.js";
import { permissionDenied, unauthenticated } from "./errors.js";

/** How a method may be called, as declared in its proto. */
export interface MethodRule {
  readonly permission: string;
  readonly public: boolean;
  readonly platformOnly: boolean;
}

/**
 * Infrastructure services every server exposes without a credential: health
 * (probes must work before anyone signs in) and reflection (it describes the
 * public contracts, nothing more).
 */
const infrastructureServices = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

const cache = new WeakMap<DescMethod, MethodRule | null>();

/**
 * The authorization rule a method declares with `(bulwark.authz.v1.rule)`,
 * or undefined if it declares none (such a method is never served).
 */
export function ruleOf(method: DescMethod): MethodRule | undefined {
  let cached = cache.get(method);
  if (cached === undefined) {
    cached = readRule(method);
    cache.set(method, cached);
  }
  return cached ?? undefined;
}

function readRule(method: DescMethod): MethodRule | null {
  if (infrastructureServices.has(method.parent.typeName)) return { permission: "", public: true, platformOnly: false };
  if (!hasOption(method, ruleExtension)) return null;
  const r: Rule = getOption(method, ruleExtension);
  if (r.public && r.permission !== "") return null;
  if (!r.public && r.permission === "") return null;
  return { permission: r.permission, public: r.public, platformOnly: r.platformOnly };
}

/**
 * Refuses the call unless the principal may invoke the method: a method
 * without a rule is refused for everyone; a public method needs nothing; a
 * platform-only method needs a platform principal; every other method needs
 * the declared permission among the principal's effective permissions.
 */
export function authorize(method: DescMethod, principal: Principal | undefined): MethodRule {
  const rule = ruleOf(method);
  if (rule === undefined) throw permissionDenied(`${method.name} declares no authorization rule`);
  if (rule.public) return rule;
  if (principal === undefined) throw unauthenticated();
  if (rule.platformOnly && !isPlatformPrincipal(principal)) throw permissionDenied(`${method.name} is for platform operators only`);
  if (!hasPermission(principal, rule.permission)) throw permissionDenied(`missing permission ${rule.permission}`);
  return rule;
}
