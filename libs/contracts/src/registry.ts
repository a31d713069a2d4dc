import type { DescFile, DescService, Registry } from "@bufbuild/protobuf";
import { createRegistry } from "@bufbuild/protobuf";
import { file_bulwark_events_v1_envelope } from "./gen/bulwark/events/v1/envelope_pb.js";
import { file_bulwark_events_v1_identity_events } from "./gen/bulwark/events/v1/identity_events_pb.js";
import { file_bulwark_events_v1_identity_mfa_events } from "./gen/bulwark/events/v1/identity_mfa_events_pb.js";
import { file_bulwark_events_v1_identity_notification_events } from "./gen/bulwark/events/v1/identity_notification_events_pb.js";
import { file_bulwark_events_v1_identity_operator_events } from "./gen/bulwark/events/v1/identity_operator_events_pb.js";
import { file_bulwark_events_v1_identity_passkey_events } from "./gen/bulwark/events/v1/identity_passkey_events_pb.js";
import { file_bulwark_events_v1_tenancy_events } from "./gen/bulwark/events/v1/tenancy_events_pb.js";
import { file_bulwark_events_v1_scheduler_events } from "./gen/bulwark/events/v1/scheduler_events_pb.js";
import { file_bulwark_events_v1_call_events } from "./gen/bulwark/events/v1/call_events_pb.js";
import { file_bulwark_identity_v1_mfa_service, MfaService } from "./gen/bulwark/identity/v1/mfa_service_pb.js";
import { file_bulwark_identity_v1_operator_service, OperatorService } from "./gen/bulwark/identity/v1/operator_service_pb.js";
import { file_bulwark_identity_v1_passkey_service, PasskeyService } from "./gen/bulwark/identity/v1/passkey_service_pb.js";
import { AuthService, file_bulwark_identity_v1_auth_service } from "./gen/bulwark/identity/v1/auth_service_pb.js";
import { file_bulwark_identity_v1_role_service, RoleService } from "./gen/bulwark/identity/v1/role_service_pb.js";
import { file_bulwark_identity_v1_session_service, SessionService } from "./gen/bulwark/identity/v1/session_service_pb.js";
import { file_bulwark_identity_v1_user_service, UserService } from "./gen/bulwark/identity/v1/user_service_pb.js";
import { file_bulwark_tenancy_v1_tenancy_service, TenancyService } from "./gen/bulwark/tenancy/v1/tenancy_service_pb.js";
import { ApiKeyService, file_bulwark_keys_v1_api_key_service } from "./gen/bulwark/keys/v1/api_key_service_pb.js";
import { file_bulwark_events_v1_keys_api_key_events } from "./gen/bulwark/events/v1/keys_api_key_events_pb.js";
import { file_bulwark_events_v1_keys_encryption_events } from "./gen/bulwark/events/v1/keys_encryption_events_pb.js";
import { file_bulwark_events_v1_audit_events } from "./gen/bulwark/events/v1/audit_events_pb.js";
import { EncryptionService, file_bulwark_keys_v1_encryption_service } from "./gen/bulwark/keys/v1/encryption_service_pb.js";
import { file_bulwark_keys_v1_secret_service, SecretService } from "./gen/bulwark/keys/v1/secret_service_pb.js";
import { file_bulwark_keys_v1_webhook_service, WebhookService } from "./gen/bulwark/keys/v1/webhook_service_pb.js";
import { AuditLogService, file_bulwark_audit_v1_audit_log_service } from "./gen/bulwark/audit/v1/audit_log_service_pb.js";
import { file_bulwark_audit_v1_monitoring_service, MonitoringService } from "./gen/bulwark/audit/v1/monitoring_service_pb.js";
import { DataSubjectParticipant, file_bulwark_compliance_v1_data_subject_participant } from "./gen/bulwark/compliance/v1/data_subject_participant_pb.js";
import { DataSubjectRequestService, file_bulwark_compliance_v1_data_subject_request_service } from "./gen/bulwark/compliance/v1/data_subject_request_service_pb.js";
import { file_bulwark_compliance_v1_tenant_deletion_service, TenantDeletionService } from "./gen/bulwark/compliance/v1/tenant_deletion_service_pb.js";
import { file_bulwark_events_v1_compliance_events } from "./gen/bulwark/events/v1/compliance_events_pb.js";
import { file_bulwark_compliance_v1_posture_service, PostureService } from "./gen/bulwark/compliance/v1/posture_service_pb.js";
import { AccessReviewService, file_bulwark_compliance_v1_access_review_service } from "./gen/bulwark/compliance/v1/access_review_service_pb.js";
import { file_bulwark_compliance_v1_retention_service, RetentionService } from "./gen/bulwark/compliance/v1/retention_service_pb.js";
import { file_bulwark_events_v1_compliance_review_events } from "./gen/bulwark/events/v1/compliance_review_events_pb.js";

/**
 * Every Bulwark service of the mesh. A test walks this list to prove that
 * each RPC declares an authorization rule; add new services here.
 */
export const bulwarkServices: readonly DescService[] = [TenancyService, UserService, AuthService, SessionService, RoleService, MfaService, PasskeyService, OperatorService, EncryptionService, SecretService, WebhookService, ApiKeyService, AuditLogService, MonitoringService, DataSubjectParticipant, DataSubjectRequestService, TenantDeletionService, PostureService, AccessReviewService, RetentionService];

/**
 * Every contract file (their imports are reachable through
 * `DescFile.dependencies`), for server reflection.
 */
export const contractFiles: readonly DescFile[] = [
  file_bulwark_tenancy_v1_tenancy_service,
  file_bulwark_identity_v1_user_service,
  file_bulwark_identity_v1_auth_service,
  file_bulwark_identity_v1_session_service,
  file_bulwark_identity_v1_role_service,
  file_bulwark_identity_v1_mfa_service,
  file_bulwark_identity_v1_passkey_service,
  file_bulwark_identity_v1_operator_service,
  file_bulwark_keys_v1_encryption_service,
  file_bulwark_keys_v1_secret_service,
  file_bulwark_keys_v1_webhook_service,
  file_bulwark_events_v1_envelope,
  file_bulwark_events_v1_tenancy_events,
  file_bulwark_events_v1_identity_events,
  file_bulwark_events_v1_identity_mfa_events,
  file_bulwark_events_v1_identity_passkey_events,
  file_bulwark_events_v1_identity_notification_events,
  file_bulwark_events_v1_identity_operator_events,
  file_bulwark_keys_v1_api_key_service,
  file_bulwark_events_v1_keys_api_key_events,
  file_bulwark_events_v1_scheduler_events,
  file_bulwark_events_v1_keys_encryption_events,
  file_bulwark_audit_v1_audit_log_service,
  file_bulwark_audit_v1_monitoring_service,
  file_bulwark_events_v1_call_events,
  file_bulwark_events_v1_audit_events,
  file_bulwark_compliance_v1_data_subject_participant,
  file_bulwark_compliance_v1_data_subject_request_service,
  file_bulwark_compliance_v1_tenant_deletion_service,
  file_bulwark_events_v1_compliance_events,
  file_bulwark_compliance_v1_posture_service,
  file_bulwark_compliance_v1_access_review_service,
  file_bulwark_compliance_v1_retention_service,
  file_bulwark_events_v1_compliance_review_events,
];

/** A registry of every contract type, to unpack event payloads from `Any`. */
export const contractRegistry: Registry = createRegistry(...contractFiles.flatMap((f) => [f, ...f.dependencies]));
