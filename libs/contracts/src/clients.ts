import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { TenancyService } from "./gen/bulwark/tenancy/v1/tenancy_service_pb.js";

/** A typed client of `bulwark.tenancy.v1.TenancyService`. */
export type TenancyClient = Client<typeof TenancyService>;

/**
 * Creates a typed TenancyService client on any Connect transport (Connect,
 * gRPC or gRPC-Web; in memory in tests). Use `createServiceTransport` from
 * `@bulwark/server` to get one that propagates the caller's tenant context.
 */
export function createTenancyClient(transport: Transport): TenancyClient {
  return createClient(TenancyService, transport);
}
