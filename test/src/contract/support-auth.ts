/**
 * What the sign-in, token and session tests share: users with a password
 * written straight into identity's tables (as the superuser, so no RPC of
 * the user lifecycle is needed), sign-in through the real AuthService, and
 * decoding of the access tokens it returns.
 */
import assert from "node:assert/strict";
import argon2 from "argon2";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { AuthService, Region, SessionService, type TokenPair } from "@bulwark/contracts";
import { newId } from "@bulwark/core";
import type { Client } from "@connectrpc/connect";
import { nuid } from "@nats-io/nuid";
import { clientFor, uniqueSlug } from "../support/harness.js";
import { identityQuery, type IdentityMesh } from "./support-identity.js";

/** A tenant as sign-in names it. */
export interface TestTenant {
  readonly id: string;
  readonly slug: string;
}

/** A user with a known password. */
export interface TestUser {
  readonly id: string;
  readonly tenant: TestTenant;
  readonly email: string;
  password: string;
}

/** Creates an active tenant. */
export async function tenantWithSlug(mesh: IdentityMesh): Promise<TestTenant> {
  const slug = uniqueSlug("auth");
  const { tenant } = await mesh.tenancyOps.createTenant({ slug, displayName: "Auth Co", region: Region.EU });
  assert.ok(tenant !== undefined);
  return { id: tenant.id, slug };
}

/** A password the policy accepts. */
export function goodPassword(): string {
  return `Velvet-harbor-${nuid.next()}-cobalt`;
}

/**
 * Writes a user with an argon2id hash (cheap parameters, so sign-in also
 * exercises the rehash) and role assignments.
 */
export async function createUser(
  mesh: IdentityMesh,
  tenant: TestTenant,
  opts: { roles?: string[]; state?: string; mfaEnrolled?: boolean; password?: string | null; email?: string } = {},
): Promise<TestUser> {
  const id = newId("usr");
  const email = opts.email ?? `p.${nuid.next().toLowerCase().slice(-10)}@example.test`;
  const password = opts.password === null ? "" : (opts.password ?? goodPassword());
  const hash = opts.password === null ? null : await argon2.hash(password, { type: argon2.argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 });
  await identityQuery(
    mesh,
    "insert into $schema.users (id, tenant_id, email, display_name, state, password_hash, mfa_enrolled, created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, now(), now())",
    [id, tenant.id, email, "Pat Example", opts.state ?? "ACTIVE", hash, opts.mfaEnrolled ?? false],
  );
  for (const role of opts.roles ?? ["system:member"]) {
    await identityQuery(mesh, "insert into $schema.user_roles (user_id, role_id, tenant_id, created_at) values ($1, $2, $3, now())", [id, role, tenant.id]);
  }
  return { id, tenant, email, password };
}

/** AuthService without a credential (sign-in, refresh, reset), from one client address. */
export function anonymousAuth(mesh: IdentityMesh, ip = `10.${rnd()}.${rnd()}.${rnd()}`, headers: Record<string, string> = {}): Client<typeof AuthService> {
  return clientFor(AuthService, mesh.identity.baseUrl, undefined, "grpc", { "x-forwarded-for": ip, ...headers });
}

function rnd(): number {
  return Math.floor(Math.random() * 250) + 1;
}

/** Signs a user in and returns the token pair (asserting tokens, not an MFA challenge). */
export async function signIn(mesh: IdentityMesh, user: TestUser, device = "laptop", auth = anonymousAuth(mesh)): Promise<TokenPair> {
  const res = await auth.signIn({ tenantSlug: user.tenant.slug, email: user.email, password: user.password, device });
  assert.equal(res.result.case, "tokens", `expected tokens, got ${res.result.case}`);
  return res.result.value as TokenPair;
}

/** Clients of identity's auth and session APIs holding an access token. */
export function withToken(mesh: IdentityMesh, accessToken: string): { auth: Client<typeof AuthService>; sessions: Client<typeof SessionService> } {
  return { auth: clientFor(AuthService, mesh.identity.baseUrl, accessToken), sessions: clientFor(SessionService, mesh.identity.baseUrl, accessToken) };
}

/** The claims and header of an access token (unverified; tests verify separately). */
export function claimsOf(token: string): { kid: string; sub: string; ten: string; sid: string; roles: string[]; perms: string[]; exp: number; iss: string } {
  const header = decodeProtectedHeader(token);
  const c = decodeJwt(token) as Record<string, unknown>;
  return { kid: String(header.kid), sub: String(c["sub"]), ten: String(c["ten"]), sid: String(c["sid"]), roles: c["roles"] as string[], perms: c["perms"] as string[], exp: Number(c["exp"]), iss: String(c["iss"]) };
}
