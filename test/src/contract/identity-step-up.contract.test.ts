/**
 * Step-up ("sudo mode") in identity: access tokens carry `auth_time` from
 * the sign-in, kept across refreshes; adding a passkey, enrolling TOTP
 * beside another factor, regenerating recovery codes and changing one's own
 * email need an authentication within the tenant's reauthentication window
 * (FAILED_PRECONDITION "re-authentication required" otherwise); and
 * AuthService.Reauthenticate renews it inside the session with the
 * password or a TOTP code. A stolen access token — here, one refreshed from
 * a session that authenticated long ago — cannot add a credential.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { AuthService, MfaService, PasskeyService, UserReauthenticatedSchema, UserService, type TokenPair } from "@bulwark/contracts";
import { clientFor, eventually } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { anonymousAuth, claimsOf, createUser, signIn, tenantWithSlug, type TestTenant, type TestUser } from "./support-auth.js";
import { eventsOf, identityQuery, startIdentityMesh, uniqueEmail, type IdentityMesh } from "./support-identity.js";
import { SoftwareAuthenticator } from "./support-webauthn.js";

let mesh: IdentityMesh;
let tenant: TestTenant;

before(async () => {
  mesh = await startIdentityMesh();
  tenant = await tenantWithSlug(mesh);
});

after(async () => {
  await mesh?.stop();
});

const stale = /re-authentication required/;

// RFC 6238 (SHA-1, 6 digits, 30 s), as in the MFA tests.
function base32Decode(s: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of s.replace(/=+$/, "")) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret: string, delta = 0): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + delta));
  const mac = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  return ((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).toString().padStart(6, "0");
}

/** Waits until at least 5 s remain in the current time step. */
async function roomInStep(): Promise<void> {
  const left = 30_000 - (Date.now() % 30_000);
  if (left < 5_000) await new Promise((r) => setTimeout(r, left + 100));
}

interface Clients {
  readonly auth: Client<typeof AuthService>;
  readonly mfa: Client<typeof MfaService>;
  readonly passkeys: Client<typeof PasskeyService>;
  readonly users: Client<typeof UserService>;
}

function clients(accessToken: string): Clients {
  const url = mesh.identity.baseUrl;
  return { auth: clientFor(AuthService, url, accessToken), mfa: clientFor(MfaService, url, accessToken), passkeys: clientFor(PasskeyService, url, accessToken), users: clientFor(UserService, url, accessToken) };
}

/**
 * What an attacker holds after stealing a token: the session authenticated
 * `ageS` seconds ago (its row says so) and the token was refreshed since,
 * so it is valid and current but its auth_time is old.
 */
async function staleTokens(tokens: TokenPair, ageS = 3_600): Promise<TokenPair> {
  await identityQuery(mesh, "update $schema.sessions set auth_time = now() - make_interval(secs => $2) where id = $1", [tokens.sessionId, ageS]);
  const { tokens: refreshed } = await anonymousAuth(mesh).refreshTokens({ refreshToken: tokens.refreshToken });
  assert.ok(refreshed !== undefined);
  return refreshed;
}

/** A user with confirmed TOTP, signed in afresh; the confirmation spent the previous step's code. */
async function totpUser(roles?: string[]): Promise<{ user: TestUser; tokens: TokenPair; secret: string }> {
  await roomInStep();
  const user = await createUser(mesh, tenant, roles === undefined ? {} : { roles });
  const tokens = await signIn(mesh, user);
  const { secret } = await clients(tokens.accessToken).mfa.enrollTotp({});
  await clients(tokens.accessToken).mfa.confirmTotp({ code: totp(secret, -1) });
  return { user, tokens, secret };
}

async function passkeyCount(userId: string): Promise<number> {
  const [row] = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.passkeys where user_id = $1", [userId]);
  return row?.n ?? 0;
}

describe("auth_time", () => {
  test("an access token carries the sign-in time as auth_time, and a refresh keeps it", async () => {
    const before = Math.floor(Date.now() / 1000);
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    const authTime = Number((JSON.parse(Buffer.from(tokens.accessToken.split(".")[1]!, "base64url").toString()) as { auth_time: number }).auth_time);
    assert.ok(authTime >= before - 1 && authTime <= Math.ceil(Date.now() / 1000), `auth_time ${authTime} is the sign-in`);
    await new Promise((r) => setTimeout(r, 1_100));
    const { tokens: refreshed } = await anonymousAuth(mesh).refreshTokens({ refreshToken: tokens.refreshToken });
    const claims = JSON.parse(Buffer.from(refreshed!.accessToken.split(".")[1]!, "base64url").toString()) as { auth_time: number; iat: number };
    assert.equal(claims.auth_time, authTime, "a refresh is no new authentication");
    assert.ok(claims.iat > authTime);
  });
});

describe("a stolen access token alone cannot add a credential", () => {
  test("a stolen access token cannot register a passkey, neither begin nor finish the ceremony", async () => {
    const user = await createUser(mesh, tenant);
    const fresh = await signIn(mesh, user);
    const stolen = await staleTokens(await signIn(mesh, user));
    const attacker = new SoftwareAuthenticator();
    await refusedWith(clients(stolen.accessToken).passkeys.beginPasskeyRegistration({}), Code.FailedPrecondition, stale);
    // A challenge the user began legitimately is no help either.
    const { optionsJson } = await clients(fresh.accessToken).passkeys.beginPasskeyRegistration({});
    await refusedWith(clients(stolen.accessToken).passkeys.finishPasskeyRegistration({ responseJson: attacker.create(optionsJson), name: "Attacker key" }), Code.FailedPrecondition, stale);
    assert.equal(await passkeyCount(user.id), 0, "no passkey was added");
    assert.ok(!(await eventsOf(mesh, tenant.id)).some((e) => e.type === "user.passkey_added" && e.aggregateId === user.id));
    const { passkey } = await clients(fresh.accessToken).passkeys.finishPasskeyRegistration({ responseJson: new SoftwareAuthenticator().create((await clients(fresh.accessToken).passkeys.beginPasskeyRegistration({})).optionsJson), name: "Mine" });
    assert.equal(passkey?.name, "Mine", "a recent sign-in registers a passkey");
  });

  test("a stolen access token cannot enrol TOTP beside a passkey, but a user without a factor enrols with their sign-in", async () => {
    const user = await createUser(mesh, tenant);
    const fresh = await signIn(mesh, user);
    const own = clients(fresh.accessToken).passkeys;
    await own.finishPasskeyRegistration({ responseJson: new SoftwareAuthenticator().create((await own.beginPasskeyRegistration({})).optionsJson), name: "Laptop" });
    const stolen = await staleTokens(fresh);
    await refusedWith(clients(stolen.accessToken).mfa.enrollTotp({}), Code.FailedPrecondition, stale);
    const [row] = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.totp_credentials where user_id = $1", [user.id]);
    assert.equal(row?.n, 0, "no TOTP secret was made");

    const newcomer = await createUser(mesh, tenant);
    const old = await staleTokens(await signIn(mesh, newcomer));
    assert.ok((await clients(old.accessToken).mfa.enrollTotp({})).secret.length > 0, "no factor yet: no step-up");
  });

  test("a pending TOTP enrolment cannot be confirmed with a stale token once a passkey exists", async () => {
    await roomInStep();
    const user = await createUser(mesh, tenant);
    const fresh = await signIn(mesh, user);
    const { secret } = await clients(fresh.accessToken).mfa.enrollTotp({});
    const own = clients(fresh.accessToken).passkeys;
    await own.finishPasskeyRegistration({ responseJson: new SoftwareAuthenticator().create((await own.beginPasskeyRegistration({})).optionsJson), name: "Laptop" });
    const stolen = await staleTokens(fresh);
    await refusedWith(clients(stolen.accessToken).mfa.confirmTotp({ code: totp(secret) }), Code.FailedPrecondition, stale);
  });

  test("regenerating recovery codes needs a recent authentication", async () => {
    const { tokens, secret } = await totpUser();
    const stolen = await staleTokens(tokens);
    await refusedWith(clients(stolen.accessToken).mfa.regenerateRecoveryCodes({ totpCode: totp(secret) }), Code.FailedPrecondition, stale);
  });

  test("changing one's own email needs a recent authentication; changing another's does not", async () => {
    const lead = await createUser(mesh, tenant, { roles: ["system:team_lead"] });
    const stolen = await staleTokens(await signIn(mesh, lead));
    await refusedWith(clients(stolen.accessToken).users.requestEmailChange({ userId: lead.id, newEmail: uniqueEmail("attacker") }), Code.FailedPrecondition, stale);
    const [pending] = await identityQuery<{ n: number }>(mesh, "select count(*)::int as n from $schema.email_change_tokens where user_id = $1", [lead.id]);
    assert.equal(pending?.n, 0);
    const member = await createUser(mesh, tenant);
    assert.ok((await clients(stolen.accessToken).users.requestEmailChange({ userId: member.id, newEmail: uniqueEmail("moved") })).expireTime !== undefined);
    const fresh = await signIn(mesh, lead);
    assert.ok((await clients(fresh.accessToken).users.requestEmailChange({ userId: lead.id, newEmail: uniqueEmail("mine") })).expireTime !== undefined);
  });

  test("a credential without auth_time never counts as recent", async () => {
    const user = await createUser(mesh, tenant);
    const token = mesh.identity.issueToken({ id: user.id, kind: "user", tenantId: tenant.id, permissions: new Set(["identity.passkeys.self"]) });
    await refusedWith(clients(token).passkeys.beginPasskeyRegistration({}), Code.FailedPrecondition, stale);
  });

  test("the window is the tenant's reauthentication_window", async () => {
    const t = await tenantWithSlug(mesh);
    const user = await createUser(mesh, t);
    const tokens = await staleTokens(await signIn(mesh, user), 120);
    assert.ok((await clients(tokens.accessToken).passkeys.beginPasskeyRegistration({})).optionsJson !== "", "two minutes is within the default 15");
    await mesh.tenancyOps.updateSecurityPolicy({ tenantId: t.id, policy: { reauthenticationWindow: { seconds: 60n } }, updateMask: { paths: ["reauthentication_window"] } });
    await eventually(async () => {
      try {
        await clients(tokens.accessToken).passkeys.beginPasskeyRegistration({});
        return false;
      } catch (err) {
        return stale.test(String(err));
      }
    }, 10_000);
    await refusedWith(clients(tokens.accessToken).passkeys.beginPasskeyRegistration({}), Code.FailedPrecondition, "within the last 1 minute;");
  });
});

describe("Reauthenticate", () => {
  test("Reauthenticate with the password renews auth_time in the same session, and the stale token's holder gains nothing from the old refresh token", async () => {
    const user = await createUser(mesh, tenant);
    const stolen = await staleTokens(await signIn(mesh, user));
    const { tokens } = await clients(stolen.accessToken).auth.reauthenticate({ proof: { case: "password", value: user.password } });
    assert.ok(tokens !== undefined);
    assert.equal(tokens.sessionId, stolen.sessionId, "the same session");
    const claims = JSON.parse(Buffer.from(tokens.accessToken.split(".")[1]!, "base64url").toString()) as { auth_time: number };
    assert.ok(Math.abs(claims.auth_time - Date.now() / 1000) < 5, "auth_time is now");
    assert.deepEqual(claimsOf(tokens.accessToken).perms, claimsOf(stolen.accessToken).perms, "the same permissions");
    await clients(tokens.accessToken).passkeys.beginPasskeyRegistration({});
    const event = (await eventsOf(mesh, tenant.id)).find((e) => e.type === "user.reauthenticated" && e.aggregateId === user.id);
    assert.ok(event !== undefined);
    assert.deepEqual({ ...fromBinary(UserReauthenticatedSchema, event.payload) }, { $typeName: "bulwark.events.v1.UserReauthenticated", userId: user.id, sessionId: stolen.sessionId, method: "password" });
    // The session's earlier refresh token was spent: presenting it is reuse, which ends the session.
    await refusedWith(anonymousAuth(mesh).refreshTokens({ refreshToken: stolen.refreshToken }), Code.Unauthenticated);
    await refusedWith(clients(tokens.accessToken).passkeys.listPasskeys({}), Code.Unauthenticated);
  });

  test("Reauthenticate with a TOTP code works once per code; a wrong password or code is UNAUTHENTICATED", async () => {
    const { user, tokens, secret } = await totpUser(["system:member"]);
    const stolen = await staleTokens(tokens);
    const auth = clients(stolen.accessToken).auth;
    await refusedWith(auth.reauthenticate({ proof: { case: "password", value: `${user.password}-wrong` } }), Code.Unauthenticated);
    const code = totp(secret);
    const { tokens: renewed } = await auth.reauthenticate({ proof: { case: "totpCode", value: code } });
    await refusedWith(clients(renewed!.accessToken).auth.reauthenticate({ proof: { case: "totpCode", value: code } }), Code.Unauthenticated, "not valid");
    await clients(renewed!.accessToken).mfa.regenerateRecoveryCodes({ totpCode: totp(secret, 1) });
  });

  test("Reauthenticate is throttled like ChangePassword: repeated wrong passwords lock it with RESOURCE_EXHAUSTED", async () => {
    const auth = clients((await signIn(mesh, await createUser(mesh, tenant))).accessToken).auth;
    const codes: Code[] = [];
    // The fifth failure locks for a second, the next for two, …: a lock is met within a few more tries however slow the machine.
    for (let i = 0; i < 8 && !codes.includes(Code.ResourceExhausted); i++) {
      codes.push(await auth.reauthenticate({ proof: { case: "password", value: `not-the-password-${i}` } }).then(
        () => Code.Unknown,
        (err: unknown) => ConnectError.from(err).code,
      ));
    }
    assert.deepEqual(codes.slice(0, 5), [Code.Unauthenticated, Code.Unauthenticated, Code.Unauthenticated, Code.Unauthenticated, Code.Unauthenticated], codes.map((c) => Code[c]).join(","));
    assert.equal(codes.at(-1), Code.ResourceExhausted, codes.map((c) => Code[c]).join(","));
    assert.ok(!codes.includes(Code.Unknown));
  });

  test("Reauthenticate refuses a missing proof, a TOTP code without TOTP, a credential without a session, and no credential", async () => {
    const user = await createUser(mesh, tenant);
    const auth = clients((await signIn(mesh, user)).accessToken).auth;
    await refusedWith(auth.reauthenticate({}), Code.InvalidArgument, "proof");
    await refusedWith(auth.reauthenticate({ proof: { case: "totpCode", value: "12345" } }), Code.InvalidArgument, "totp_code");
    await refusedWith(auth.reauthenticate({ proof: { case: "totpCode", value: "123456" } }), Code.FailedPrecondition, "TOTP is not enabled");
    const sessionless = mesh.identity.issueToken({ id: user.id, kind: "user", tenantId: tenant.id, permissions: new Set(["identity.sessions.self"]) });
    await refusedWith(clients(sessionless).auth.reauthenticate({ proof: { case: "password", value: user.password } }), Code.FailedPrecondition, "no session");
    await refusedWith(clientFor(AuthService, mesh.identity.baseUrl).reauthenticate({ proof: { case: "password", value: user.password } }), Code.Unauthenticated);
  });

  test("Reauthenticate refuses a session that was revoked", async () => {
    const user = await createUser(mesh, tenant);
    const tokens = await signIn(mesh, user);
    await identityQuery(mesh, "update $schema.sessions set revoked_at = now(), revoke_reason = 'revoked' where id = $1", [tokens.sessionId]);
    await refusedWith(clients(tokens.accessToken).auth.reauthenticate({ proof: { case: "password", value: user.password } }), Code.Unauthenticated, "session has ended");
  });
});
