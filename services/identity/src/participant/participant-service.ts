import type { ServiceImpl } from "@connectrpc/connect";
import { LockMode } from "@mikro-orm/core";
import {
  ErasureMethod,
  RectificationOutcome,
  UserDeletedSchema,
  UserEmailChangedSchema,
  UserUpdatedSchema,
  type CategoryErasure,
  type DataSubjectParticipant,
  type DescribeSubjectDataRequest,
  type EraseSubjectDataRequest,
  type EraseTenantDataRequest,
  type ExportSubjectDataRequest,
  type FieldRectification,
  type RectifySubjectDataRequest,
} from "@bulwark/contracts";
import { alreadyExists, failedPrecondition, invalidArgument, isEmailAddress, ownerRoleId, runAsPlatform } from "@bulwark/core";
import type { Database, EntityManager } from "@bulwark/db";
import type { EventPublisher } from "@bulwark/events";
import { checkedCorrections, erased, exportSchema, holdOn, inErasedTenant, inSubjectTenant, rectified, retained } from "@bulwark/server";
import { revokeSessions } from "../auth/sessions.js";
import { UserEntity } from "../entities/user.entity.js";
import { userToProto } from "../users/mappers.js";
import { isUniqueViolation, lockActiveOwners, maxAccessTokenLifetimeS, roleIdsOf } from "../users/store.js";

/** The fields of a subject's data identity corrects (RectifySubjectData). */
export const rectifiableFields = ["email", "display_name"] as const;

/** What the identity participant needs. */
export interface IdentityParticipantDeps {
  readonly db: Database;
  readonly events: EventPublisher;
  readonly afterCommit?: () => void;
}

/**
 * The categories of a subject's data in identity, each with the SQL that
 * selects the subject's records (`?` is the user id) and, for export, the
 * columns shown (never a password hash, a secret or a token hash).
 */
const categories = [
  { name: "profile", description: "The account: email, display name, state, sign-in times", erasure: ErasureMethod.DELETE, table: "users", where: "id = ?", columns: "id, email, display_name, state, mfa_enrolled, created_at, updated_at, last_sign_in_at, last_activity_at" },
  { name: "sessions", description: "Sign-in sessions: device, user agent, address, times", erasure: ErasureMethod.DELETE, table: "sessions", where: "user_id = ?", columns: "id, device, user_agent, ip_address, created_at, last_seen_at, expires_at, revoked_at" },
  { name: "passkeys", description: "Registered passkeys (public keys only)", erasure: ErasureMethod.DELETE, table: "passkeys", where: "user_id = ?", columns: "id, name, transports, created_at" },
  { name: "factors", description: "Second factors: a TOTP authenticator (secret never exported) and recovery codes (hashes never exported)", erasure: ErasureMethod.DELETE, table: "totp_credentials", where: "user_id = ?", columns: "'totp' as kind, confirmed_at as created_at" },
  { name: "role_grants", description: "Roles held in the tenant", erasure: ErasureMethod.DELETE, table: "user_roles", where: "user_id = ?", columns: "role_id, created_at" },
] as const;

const schema = exportSchema("identity", {
  profile: { id: "string", email: "string", display_name: "string", state: "string", mfa_enrolled: "boolean", created_at: "string", updated_at: "string", last_sign_in_at: "string?", last_activity_at: "string?" },
  sessions: { id: "string", device: "string", user_agent: "string", ip_address: "string", created_at: "string", last_seen_at: "string", expires_at: "string", revoked_at: "string?" },
  passkeys: { id: "string", name: "string", transports: "string[]", created_at: "string" },
  factors: { kind: "string", created_at: "string?" },
  role_grants: { role_id: "string", created_at: "string" },
});

/** The tables of a subject's data other than the user row, deleted before it (most also cascade from it). */
const subjectTables: Readonly<Record<string, readonly string[]>> = {
  sessions: ["refresh_tokens where session_id in (select id from sessions where user_id = ?)", "sessions where user_id = ?", "mfa_challenges where user_id = ?"],
  passkeys: ["passkeys where user_id = ?", "webauthn_challenges where user_id = ?"],
  factors: ["totp_credentials where user_id = ?", "recovery_codes where user_id = ?"],
  role_grants: ["user_roles where user_id = ?"],
};

function jsonRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = v instanceof Date ? v.toISOString() : v;
  return out;
}

async function count(em: EntityManager, table: string, where: string, id: string): Promise<number> {
  return Number((await em.execute<{ n: string }[]>(`select count(*)::text as n from ${table} where ${where}`, [id]))[0]!.n);
}

/**
 * bulwark.compliance.v1.DataSubjectParticipant for identity: a user's
 * profile, sessions, passkeys, second factors and role grants. Erasure
 * revokes their sessions (session.revoked, so every service stops their
 * tokens), deletes every category not under a legal hold, then the user
 * (user.deleted, so keys revokes their API keys) and their sign-in
 * counters, which are keyed by address. A tenant's erasure deletes every
 * row of the tenant in every table of identity's schema.
 */
export class IdentityParticipantImpl implements ServiceImpl<typeof DataSubjectParticipant> {
  readonly #d: IdentityParticipantDeps;

  constructor(deps: IdentityParticipantDeps) {
    this.#d = deps;
  }

  async describeSubjectData(req: DescribeSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const counts = await this.#d.db.transaction(async (em) => Promise.all(categories.map((c) => count(em, c.table, c.where, s.subjectId))));
      return { service: "identity", categories: categories.map((c, i) => ({ name: c.name, description: c.description, recordCount: BigInt(counts[i]!), erasure: c.erasure })) };
    });
  }

  async exportSubjectData(req: ExportSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const document: Record<string, unknown[]> = {};
      let records = 0;
      await this.#d.db.transaction(async (em) => {
        for (const c of categories) {
          const rows = await em.execute<Record<string, unknown>[]>(`select ${c.columns} from ${c.table} where ${c.where}`, [s.subjectId]);
          document[c.name] = rows.map(jsonRow);
          records += rows.length;
        }
        const codes = await em.execute<Record<string, unknown>[]>("select 'recovery_code' as kind, created_at from recovery_codes where user_id = ? and used_at is null", [s.subjectId]);
        document["factors"]!.push(...codes.map(jsonRow));
        records += codes.length;
      });
      return { service: "identity", documentJson: JSON.stringify(document), schemaJson: schema, recordCount: BigInt(records) };
    });
  }

  async eraseSubjectData(req: EraseSubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const now = new Date();
      const out: CategoryErasure[] = [];
      const email = await this.#d.db.transaction(async (em) => {
        // First lock, as every change that could take an owner away: the tenant keeps an active owner.
        const owners = await lockActiveOwners(em);
        const holdsOwner = (await em.execute<{ n: number }[]>("select count(*)::int as n from user_roles where user_id = ? and role_id = ?", [s.subjectId, ownerRoleId]))[0]!.n > 0;
        if (holdsOwner && !owners.some((id) => id !== s.subjectId)) throw failedPrecondition("the subject is the tenant's last owner: transfer ownership first (make another active user Owner), then erase them");
        const user = (await em.execute<{ email: string }[]>("select email from users where id = ? for update", [s.subjectId]))[0];
        const counts: Record<string, number> = {};
        for (const c of categories) counts[c.name] = await count(em, c.table, c.where, s.subjectId);
        const sessionsHold = holdOn(req.legalHolds, "sessions", now);
        if (user !== undefined && sessionsHold === undefined) await revokeSessions(em, this.#d.events, { userId: s.subjectId }, "user_deleted", maxAccessTokenLifetimeS);
        for (const [category, statements] of Object.entries(subjectTables)) {
          const hold = holdOn(req.legalHolds, category, now);
          if (hold !== undefined) {
            out.push(retained(category, hold, counts[category] ?? 0));
            continue;
          }
          for (const st of statements) await em.execute(`delete from ${st}`, [s.subjectId]);
          out.push(erased(category, counts[category] ?? 0));
        }
        const profileHold = holdOn(req.legalHolds, "profile", now);
        if (profileHold !== undefined) {
          out.push(retained("profile", profileHold, counts["profile"] ?? 0));
          return undefined;
        }
        if (user !== undefined) {
          await em.execute("delete from users where id = ?", [s.subjectId]);
          await this.#d.events.publish(em, { aggregate: "user", verb: "deleted", aggregateId: s.subjectId, schema: UserDeletedSchema, payload: { $typeName: UserDeletedSchema.typeName, userId: s.subjectId } });
        }
        out.push(erased("profile", counts["profile"] ?? 0));
        return user?.email;
      });
      this.#d.afterCommit?.();
      // Sign-in counters are platform rows keyed "acct:<slug>:<email>".
      if (email !== undefined) {
        await runAsPlatform(`data subject erasure ${req.requestId}`, () =>
          this.#d.db.transaction((em) => em.execute("delete from sign_in_throttles where key like 'acct:%' and right(key, length(?) + 1) = ':' || ?", [email, email])),
        );
      }
      return { service: "identity", categories: out };
    });
  }

  /**
   * Corrects the user's email and display name as UserService would, in one
   * transaction: the email lower-cased and unique in the tenant (taken by
   * another user: REFUSED), pending email changes consumed, and
   * user.email_changed published (the notifier tells the old address);
   * the display name not blank, with user.updated. The events carry the
   * values as identity's events always do, in fields audit seals under the
   * subject's key. Other fields are NOT_APPLICABLE.
   */
  async rectifySubjectData(req: RectifySubjectDataRequest) {
    return inSubjectTenant(req.subject, async (s) => {
      const corrections = checkedCorrections(req.corrections);
      const wanted = new Map<string, string>();
      for (const [i, c] of corrections.entries()) {
        if (c.field === "email") {
          const email = c.value.trim().toLowerCase();
          if (!isEmailAddress(email)) throw invalidArgument(`corrections[${i}].value`, "must be an email address");
          wanted.set("email", email);
        } else if (c.field === "display_name") {
          const name = c.value.trim();
          if (name === "" || name.length > 200) throw invalidArgument(`corrections[${i}].value`, "must be a display name of 1-200 characters");
          wanted.set("display_name", name);
        }
      }
      const results = new Map<string, FieldRectification>();
      if (wanted.size > 0) {
        await this.#d.db.transaction(async (em) => {
          const u = await em.findOne(UserEntity, { id: s.subjectId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
          if (u === null) {
            for (const f of wanted.keys()) results.set(f, rectified(f, RectificationOutcome.NOTHING_HELD, "no such user"));
            return;
          }
          const now = new Date();
          const oldEmail = u.email;
          const email = wanted.get("email");
          if (email !== undefined) {
            if (email === u.email) results.set("email", rectified("email", RectificationOutcome.UNCHANGED));
            else if ((await em.count(UserEntity, { email, id: { $ne: u.id } })) > 0) results.set("email", rectified("email", RectificationOutcome.REFUSED, "another user of the tenant has this email"));
            else {
              u.email = email;
              await em.execute("update email_change_tokens set used_at = ? where user_id = ? and used_at is null", [now, u.id]);
              results.set("email", rectified("email", RectificationOutcome.APPLIED));
            }
          }
          const name = wanted.get("display_name");
          if (name !== undefined) results.set("display_name", rectified("display_name", name === u.displayName ? RectificationOutcome.UNCHANGED : RectificationOutcome.APPLIED));
          if (name !== undefined && name !== u.displayName) u.displayName = name;
          const applied = [...results.values()].filter((r) => r.outcome === RectificationOutcome.APPLIED).map((r) => r.field);
          if (applied.length === 0) return;
          u.updatedAt = now;
          try {
            await em.flush();
          } catch (err) {
            // Another user took the address meanwhile: the saga retries and then finds it taken.
            if (isUniqueViolation(err)) throw alreadyExists("user with that email");
            throw err;
          }
          const message = userToProto(u, await roleIdsOf(em, u.id));
          if (applied.includes("email")) {
            await this.#d.events.publish(em, { aggregate: "user", verb: "email_changed", aggregateId: u.id, schema: UserEmailChangedSchema, payload: { $typeName: UserEmailChangedSchema.typeName, userId: u.id, oldEmail, newEmail: u.email } });
          }
          if (applied.includes("display_name")) {
            await this.#d.events.publish(em, { aggregate: "user", verb: "updated", aggregateId: u.id, schema: UserUpdatedSchema, payload: { $typeName: UserUpdatedSchema.typeName, user: message, changedFields: ["display_name"] } });
          }
        });
        this.#d.afterCommit?.();
      }
      return {
        service: "identity",
        fields: corrections.map((c) => results.get(c.field) ?? rectified(c.field, RectificationOutcome.NOT_APPLICABLE, "identity holds no such field")),
      };
    });
  }

  async eraseTenantData(req: EraseTenantDataRequest) {
    return inErasedTenant(req.tenantId, async () => {
      const removed = await this.#d.db.transaction(async (em) => {
        const users = (await em.execute<{ n: string }[]>("with d as (delete from users where tenant_id = ? returning 1) select count(*)::text as n from d", [req.tenantId]))[0]!.n;
        const tables = await em.execute<{ table_name: string }[]>(
          `select c.table_name from information_schema.columns c join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
           where c.table_schema = current_schema() and c.column_name = 'tenant_id' and t.table_type = 'BASE TABLE' and c.table_name not in ('outbox', 'inbox', 'parked_events', 'users')`,
        );
        for (const t of tables) await em.execute(`delete from "${t.table_name}" where tenant_id = ?`, [req.tenantId]);
        return Number(users);
      });
      return { service: "identity", categories: [erased("users", removed, "with their sessions, passkeys, factors, roles and invitations")] };
    });
  }
}
