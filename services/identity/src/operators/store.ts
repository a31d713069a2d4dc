import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OperatorCreatedSchema, OperatorSchema, OperatorState, type Operator } from "@bulwark/contracts";
import { alreadyExists, currentContext, newId, newRequestId, runWithContext } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { checkNewPassword, defaultMinLength } from "../auth/password-policy.js";
import type { PasswordHasher } from "../auth/passwords.js";

/** An operator as stored (the columns every reader needs). */
export interface OperatorRecord {
  id: string;
  email: string;
  display_name: string;
  password_hash: string;
  state: string;
  created_at: Date | string;
  last_sign_in_at: Date | string | null;
}

/** The columns of `OperatorRecord`, for `select`. */
export const operatorColumns = "id, email, display_name, password_hash, state, created_at, last_sign_in_at";

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

/** Every operator, oldest first (there are few: no paging). */
export async function listOperators(db: Database): Promise<Operator[]> {
  const rows = await asPlatform("list platform operators", () => db.transaction((em) => em.execute<OperatorRecord[]>(`select ${operatorColumns} from operators order by created_at, id`)));
  return rows.map(toOperator);
}

/** The operator with `email` (lower-cased), if any. */
export async function findOperatorByEmail(em: EntityManager, email: string): Promise<OperatorRecord | undefined> {
  return (await em.execute<OperatorRecord[]>(`select ${operatorColumns} from operators where lower(email) = lower(?)`, [email]))[0];
}
