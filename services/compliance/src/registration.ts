import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ServiceRegistration } from "@bulwark/server";

/**
 * A registration whose implementation the compiler checks against the
 * service's descriptor (every method, every signature); the one cast to the
 * runtime's untyped registration is here.
 */
export function registration<S extends DescService>(service: S, file: DescFile, impl: ServiceImpl<S>): ServiceRegistration {
  return { service, file, impl: impl as unknown as ServiceRegistration["impl"] };
}
