import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OperatorCreatedSchema, OperatorMfaResetSchema, OperatorSchema, OperatorState, type Operator } from "@bulwark/contracts";
import { alreadyExists, currentContext, decodeCursor, encodeCursor, newId, newRequestId, notFound, runWithContext } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { checkNewPassword, defaultMinLength } from "../auth/password-policy.js";
import type { PasswordHasher } from "../auth/passwords.js";
import { operatorSessionTables, revokeSessions, type Revoked } from "../auth/sessions.js";
import { operatorTokenLifetimeS } from "./tokens.js";

/** An operator as stored (the columns every reader needs). */
export interface OperatorRecord {
  id: string;
  email: string;
  display_name: string;
  password_hash: string;
  state: string;
  created_at: Date | string;
  last_sign_in_at: Date | string | null;
  mfa_enrolled: boolean;
}

/** The columns of `OperatorRecord`, for `select`. */
export const operatorColumns = "id, email, display_name, password_hash, state, created_at, last_sign_in_at, mfa_enrolled";

/**
 * Runs `fn` in the explicit platform scope with no tenant at all: operator
 * rows have none, and an operator's events must not be filed under a tenant
 * a caller happened to name in a `bulwark-tenant` header.
 */
export function asPlatform<T>(reason: string, fn: () => T): T {
  const parent = currentContext();
  return runWithContext({ ...(parent ?? { requestId: newRequestId() }), tenantId: undefined, platformReason: reason }, fn);
}

/** The API shape of an operator (never the hash). */
export function toOperator(row: OperatorRecord): Operator {
  return create(OperatorSchema, {
    id: row.id,
    email: row.email,
    displayName: row.display_name,
    state: row.state === "ACTIVE" ? OperatorState.ACTIVE : row.state === "DISABLED" ? OperatorState.DISABLED : OperatorState.UNSPECIFIED,
    createTime: timestampFromDate(new Date(row.created_at)),
    ...(row.last_sign_in_at !== null ? { lastSignInTime: timestampFromDate(new Date(row.last_sign_in_at)) } : {}),
    mfaEnrolled: row.mfa_enrolled,
  });
}

/** What creating an operator needs. */
export interface NewOperator {
  readonly email: string;
  readonly displayName: string;
  readonly password: string;
}

/** Where operator creation writes. */
export interface OperatorStoreDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly hasher: PasswordHasher;
}

/**
 * Creates an ACTIVE operator and records `operator.created` in the same
 * transaction (the outbox relay of a running identity publishes it). Shared
 * by CreateOperator and the `bulwark operator create` command, so both
 * apply the same password policy (at least 12 characters, not common, not
 * built from the email or name) and the same uniqueness rule (emails are
 * compared lower-cased). INVALID_ARGUMENT for a refused password,
 * ALREADY_EXISTS for a taken email.
 */
export async function createOperator(deps: OperatorStoreDeps, input: NewOperator): Promise<Operator> {
  const email = input.email.trim().toLowerCase();
  const displayName = input.displayName.trim();
  await checkNewPassword({ password: input.password, minLength: defaultMinLength, email, displayName, field: "password" }, deps.hasher);
  const hash = await deps.hasher.hash(input.password);
  return asPlatform("create a platform operator", () =>
    deps.db.transaction(async (em) => {
      if ((await findOperatorByEmail(em, email)) !== undefined) throw alreadyExists(`an operator with email ${email}`);
      const rows = await em.execute<OperatorRecord[]>(
        `insert into operators (id, tenant_id, email, display_name, password_hash, state, created_at, last_sign_in_at)
         values (?, null, ?, ?, ?, 'ACTIVE', now(), null)
         on conflict do nothing returning ${operatorColumns}`,
        [newId("opr"), email, displayName, hash],
      );
      const row = rows[0];
      // A concurrent creation with the same email won the unique index.
      if (row === undefined) throw alreadyExists(`an operator with email ${email}`);
      const operator = toOperator(row);
      await deps.events.publish(em, { aggregate: "operator", verb: "created", aggregateId: row.id, schema: OperatorCreatedSchema, payload: create(OperatorCreatedSchema, { operator }) });
      return operator;
    }),
  );
}

/** Every operator, oldest first (the CLI's listing). */
export async function listOperators(db: Database): Promise<Operator[]> {
  const all: Operator[] = [];
  let pageToken = "";
  do {
    const page = await listOperatorsPage(db, 500, pageToken);
    all.push(...page.operators);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return all;
}

/**
 * One page of operators, oldest first, with the mesh's shared keyset
 * cursor (libs/core page-token) on (create time, id). Create times are
 * compared at millisecond precision, the cursor's.
 */
export async function listOperatorsPage(db: Database, pageSize: number, pageToken: string): Promise<{ operators: Operator[]; nextPageToken: string }> {
  const size = pageSize === 0 ? 50 : pageSize;
  const cursor = pageToken === "" ? undefined : decodeCursor(pageToken, "", "opr_");
  const created = "date_trunc('milliseconds', created_at)";
  const rows = await asPlatform("list platform operators", () =>
    db.transaction((em) =>
      em.execute<OperatorRecord[]>(
        `select ${operatorColumns} from operators${cursor === undefined ? "" : ` where (${created}, id) > (?::timestamptz, ?)`} order by ${created}, id limit ?`,
        cursor === undefined ? [size + 1] : [cursor.createdAt.toISOString(), cursor.id, size + 1],
      ),
    ),
  );
  const page = rows.slice(0, size);
  const last = page.at(-1);
  const nextPageToken = rows.length > size && last !== undefined ? encodeCursor({ createdAt: new Date(last.created_at), id: last.id, filter: "" }) : "";
  return { operators: page.map(toOperator), nextPageToken };
}

/**
 * Removes an operator's second factor (a lost authenticator) and revokes
 * their sessions, recording operator.mfa_reset and session.revoked in the
 * same transaction; their next sign-in can only enrol a new factor. Shared
 * by ResetOperatorMfa and `bulwark operator reset-mfa` (the way back when
 * no other operator can sign in). NOT_FOUND for an unknown operator. The
 * caller passes `revoked` to its revocation set after commit, if it has one.
 */
export async function resetOperatorMfa(deps: Pick<OperatorStoreDeps, "db" | "events">, operatorId: string): Promise<{ operator: Operator; revoked: Revoked[] }> {
  return asPlatform("reset a platform operator's second factor", () =>
    deps.db.transaction(async (em) => {
      const target = await em.execute<{ id: string }[]>("select id from operators where id = ? for update", [operatorId]);
      if (target.length === 0) throw notFound(`operator ${operatorId}`);
      await em.execute("delete from operator_totp_credentials where operator_id = ?", [operatorId]);
      const rows = await em.execute<OperatorRecord[]>(`update operators set mfa_enrolled = false where id = ? returning ${operatorColumns}`, [operatorId]);
      const revoked = await revokeSessions(em, deps.events, { userId: operatorId }, "mfa_reset", operatorTokenLifetimeS, operatorSessionTables);
      await deps.events.publish(em, { aggregate: "operator", verb: "mfa_reset", aggregateId: operatorId, schema: OperatorMfaResetSchema, payload: create(OperatorMfaResetSchema, { operatorId, revokedSessions: revoked.length }) });
      return { operator: toOperator(rows[0]!), revoked };
    }),
  );
}

/** The operator with `email` (lower-cased), if any. */
export async function findOperatorByEmail(em: EntityManager, email: string): Promise<OperatorRecord | undefined> {
  return (await em.execute<OperatorRecord[]>(`select ${operatorColumns} from operators where lower(email) = lower(?)`, [email]))[0];
}
