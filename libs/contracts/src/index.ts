/**
 * The contracts of the Bulwark mesh: generated messages and service
 * descriptors (protobuf-es v2, from `proto/` via `buf generate`) and one typed
 * client factory per service, so callers never assemble clients by hand.
 */
export * from "./gen/bulwark/authz/v1/authz_pb.js";
export * from "./gen/bulwark/validate/v1/validate_pb.js";
export * from "./gen/bulwark/events/v1/envelope_pb.js";
export * from "./gen/bulwark/events/v1/tenancy_events_pb.js";
export * from "./gen/bulwark/tenancy/v1/tenant_pb.js";
export * from "./gen/bulwark/tenancy/v1/tenancy_service_pb.js";
export * from "./gen/bulwark/events/v1/identity_events_pb.js";
export * from "./gen/bulwark/identity/v1/passkey_service_pb.js";
export * from "./gen/bulwark/events/v1/identity_passkey_events_pb.js";
export * from "./gen/bulwark/events/v1/identity_notification_events_pb.js";
export * from "./gen/bulwark/identity/v1/user_pb.js";
export * from "./gen/bulwark/identity/v1/user_service_pb.js";
export * from "./gen/bulwark/identity/v1/auth_service_pb.js";
export * from "./gen/bulwark/identity/v1/session_service_pb.js";
export * from "./gen/bulwark/identity/v1/role_service_pb.js";
export * from "./gen/bulwark/identity/v1/mfa_service_pb.js";
export * from "./gen/bulwark/events/v1/identity_mfa_events_pb.js";
export * from "./gen/bulwark/identity/v1/operator_service_pb.js";
export * from "./gen/bulwark/events/v1/identity_operator_events_pb.js";
export * from "./gen/bulwark/keys/v1/api_key_service_pb.js";
export * from "./gen/bulwark/events/v1/keys_api_key_events_pb.js";
export * from "./gen/bulwark/events/v1/scheduler_events_pb.js";
export * from "./gen/bulwark/keys/v1/keys_pb.js";
export * from "./gen/bulwark/keys/v1/encryption_service_pb.js";
export * from "./gen/bulwark/keys/v1/secret_service_pb.js";
export * from "./gen/bulwark/keys/v1/webhook_service_pb.js";
export * from "./gen/bulwark/events/v1/keys_encryption_events_pb.js";
export * as health from "./gen/health/v1/health_pb.js";
export * as reflectionV1 from "./gen/grpc/reflection/v1/reflection_pb.js";
export * as reflectionV1alpha from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
export * from "./gen/bulwark/diagnostics/v1alpha1/diagnostics_service_pb.js";
export * from "./gen/bulwark/compliance/v1/data_subject_participant_pb.js";
export * from "./gen/bulwark/compliance/v1/data_subject_request_service_pb.js";
export * from "./gen/bulwark/compliance/v1/tenant_deletion_service_pb.js";
export * from "./gen/bulwark/events/v1/compliance_events_pb.js";
export * from "./gen/bulwark/compliance/v1/posture_service_pb.js";
export * from "./gen/bulwark/compliance/v1/access_review_service_pb.js";
export * from "./gen/bulwark/compliance/v1/retention_service_pb.js";
export * from "./gen/bulwark/events/v1/compliance_review_events_pb.js";
export * from "./clients.js";
export * from "./registry.js";
export * from "./gen/bulwark/audit/v1/audit_entry_pb.js";
export * from "./gen/bulwark/audit/v1/audit_log_service_pb.js";
export * from "./gen/bulwark/audit/v1/monitoring_service_pb.js";
export * from "./gen/bulwark/events/v1/call_events_pb.js";
export * from "./gen/bulwark/events/v1/audit_events_pb.js";
