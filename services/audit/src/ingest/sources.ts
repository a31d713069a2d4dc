/** A service whose event stream audit records. */
export interface AuditSource {
  /** The service: its stream is `<prefix>.<service>.>`, its envelopes must be signed by it. */
  readonly service: string;
}

/**
 * Every stream the trail records, one line each: a new service's stream
 * joins by adding its line here. A stream that does not exist (a service
 * not deployed) is skipped at start and picked up once it appears.
 * audit's own stream carries the denials its pipeline reports.
 */
export const auditSources: readonly AuditSource[] = [
  { service: "tenancy" },
  { service: "identity" },
  { service: "keys" },
  { service: "audit" },
  // Erasure approvals, legal holds lifted, retention shortened, access-review decisions: evidence too.
  { service: "compliance" },
];
