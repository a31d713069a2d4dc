import { AuditLogService, file_bulwark_audit_v1_audit_log_service } from "@bulwark/contracts";
import type { AuditPart } from "../part.js";
import { registration } from "../registration.js";
import { AuditLogServiceImpl } from "./audit-log-service.js";

/** The read side: AuditLogService (entries, proofs, checkpoints, exports). */
export const logPart: AuditPart = {
  name: "log",
  entities: [],
  registrations: (ctx) => [registration(AuditLogService, file_bulwark_audit_v1_audit_log_service, new AuditLogServiceImpl(ctx))],
};
