import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { AuthService } from "./gen/bulwark/identity/v1/auth_service_pb.js";
import { MfaService } from "./gen/bulwark/identity/v1/mfa_service_pb.js";
import { OperatorService } from "./gen/bulwark/identity/v1/operator_service_pb.js";
import { PasskeyService } from "./gen/bulwark/identity/v1/passkey_service_pb.js";
import { RoleService } from "./gen/bulwark/identity/v1/role_service_pb.js";
import { SessionService } from "./gen/bulwark/identity/v1/session_service_pb.js";
import { UserService } from "./gen/bulwark/identity/v1/user_service_pb.js";
import { TenancyService } from "./gen/bulwark/tenancy/v1/tenancy_service_pb.js";
import { ApiKeyService } from "./gen/bulwark/keys/v1/api_key_service_pb.js";
import { EncryptionService } from "./gen/bulwark/keys/v1/encryption_service_pb.js";
import { SecretService } from "./gen/bulwark/keys/v1/secret_service_pb.js";
import { WebhookService } from "./gen/bulwark/keys/v1/webhook_service_pb.js";
import { AuditLogService } from "./gen/bulwark/audit/v1/audit_log_service_pb.js";
import { DataSubjectParticipant } from "./gen/bulwark/compliance/v1/data_subject_participant_pb.js";
import { DataSubjectRequestService } from "./gen/bulwark/compliance/v1/data_subject_request_service_pb.js";
import { TenantDeletionService } from "./gen/bulwark/compliance/v1/tenant_deletion_service_pb.js";
import { PostureService } from "./gen/bulwark/compliance/v1/posture_service_pb.js";
import { AccessReviewService } from "./gen/bulwark/compliance/v1/access_review_service_pb.js";
import { RetentionService } from "./gen/bulwark/compliance/v1/retention_service_pb.js";

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

/** Typed clients of every identity API. */
export interface IdentityClients {
  readonly users: Client<typeof UserService>;
  readonly auth: Client<typeof AuthService>;
  readonly sessions: Client<typeof SessionService>;
  readonly roles: Client<typeof RoleService>;
  readonly mfa: Client<typeof MfaService>;
  readonly passkeys: Client<typeof PasskeyService>;
  readonly operators: Client<typeof OperatorService>;
}

/** Creates typed clients of every identity API on one transport. */
export function createIdentityClients(transport: Transport): IdentityClients {
  return {
    users: createClient(UserService, transport),
    auth: createClient(AuthService, transport),
    sessions: createClient(SessionService, transport),
    roles: createClient(RoleService, transport),
    mfa: createClient(MfaService, transport),
    passkeys: createClient(PasskeyService, transport),
    operators: createClient(OperatorService, transport),
  };
}

/** Typed clients of every keys API. */
export interface KeysClients {
  readonly encryption: Client<typeof EncryptionService>;
  readonly secrets: Client<typeof SecretService>;
  readonly webhooks: Client<typeof WebhookService>;
}

/** Creates typed clients of every keys API on one transport. */
export function createKeysClients(transport: Transport): KeysClients {
  return {
    encryption: createClient(EncryptionService, transport),
    secrets: createClient(SecretService, transport),
    webhooks: createClient(WebhookService, transport),
  };
}

/** A typed client of `bulwark.keys.v1.ApiKeyService`. */
export type ApiKeyClient = Client<typeof ApiKeyService>;

/** Creates a typed ApiKeyService client on any Connect transport. */
export function createApiKeyClient(transport: Transport): ApiKeyClient {
  return createClient(ApiKeyService, transport);
}

/** A typed client of `bulwark.audit.v1.AuditLogService`. */
export type AuditLogClient = Client<typeof AuditLogService>;

/** Creates a typed AuditLogService client on any Connect transport. */
export function createAuditLogClient(transport: Transport): AuditLogClient {
  return createClient(AuditLogService, transport);
}

/** A typed client of `bulwark.compliance.v1.DataSubjectParticipant` (compliance calls every service's). */
export type DataSubjectParticipantClient = Client<typeof DataSubjectParticipant>;

/** Creates a typed DataSubjectParticipant client on any Connect transport. */
export function createDataSubjectParticipantClient(transport: Transport): DataSubjectParticipantClient {
  return createClient(DataSubjectParticipant, transport);
}

/** Typed clients of every compliance API. */
export interface ComplianceClients {
  readonly requests: Client<typeof DataSubjectRequestService>;
  readonly tenantDeletions: Client<typeof TenantDeletionService>;
  readonly posture: Client<typeof PostureService>;
  readonly accessReviews: Client<typeof AccessReviewService>;
  readonly retention: Client<typeof RetentionService>;
}

/** Creates typed clients of every compliance API on one transport. */
export function createComplianceClients(transport: Transport): ComplianceClients {
  return {
    requests: createClient(DataSubjectRequestService, transport),
    tenantDeletions: createClient(TenantDeletionService, transport),
    posture: createClient(PostureService, transport),
    accessReviews: createClient(AccessReviewService, transport),
    retention: createClient(RetentionService, transport),
  };
}
