import type { DescFile, DescService, Registry } from "@bufbuild/protobuf";
import { createRegistry } from "@bufbuild/protobuf";
import { file_bulwark_events_v1_envelope } from "./gen/bulwark/events/v1/envelope_pb.js";
import { file_bulwark_events_v1_tenancy_events } from "./gen/bulwark/events/v1/tenancy_events_pb.js";
import { file_bulwark_tenancy_v1_tenancy_service, TenancyService } from "./gen/bulwark/tenancy/v1/tenancy_service_pb.js";

/**
 * Every Bulwark service of the mesh. A test walks this list to prove that
 * each RPC declares an authorization rule; add new services here.
 */
export const bulwarkServices: readonly DescService[] = [TenancyService];

/**
 * Every contract file (their imports are reachable through
 * `DescFile.dependencies`), for server reflection.
 */
export const contractFiles: readonly DescFile[] = [
  file_bulwark_tenancy_v1_tenancy_service,
  file_bulwark_events_v1_envelope,
  file_bulwark_events_v1_tenancy_events,
];

/** A registry of every contract type, to unpack event payloads from `Any`. */
export const contractRegistry: Registry = createRegistry(...contractFiles);
