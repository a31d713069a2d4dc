import type { ServiceImpl } from "@connectrpc/connect";
import { DiagnosticsService, file_bulwark_diagnostics_v1alpha1_diagnostics_service } from "@bulwark/contracts";
import type { ServiceRegistration } from "./server.js";

/** bulwark.diagnostics.v1alpha1.DiagnosticsService: Ping echoes its payload. */
export const diagnosticsImpl: ServiceImpl<typeof DiagnosticsService> = {
  ping: (req) => ({ payload: req.payload }),
};

/**
 * Every service hosts DiagnosticsService, so the cost of the serving stack
 * (transport plus pipeline, no handler work) can be measured on the real
 * process and compared with its real RPCs.
 */
export const diagnosticsRegistration: ServiceRegistration = {
  service: DiagnosticsService,
  file: file_bulwark_diagnostics_v1alpha1_diagnostics_service,
  impl: diagnosticsImpl as never,
};
