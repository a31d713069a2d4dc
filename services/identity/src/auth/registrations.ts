import { AuthService, file_bulwark_identity_v1_auth_service, file_bulwark_identity_v1_session_service, SessionService } from "@bulwark/contracts";
import { AccessTokenVerifier, type CredentialResolver, type RevokedSessions } from "@bulwark/core";
import type { RuntimeDeps, ServiceRegistration } from "@bulwark/server";
import type { IdentityContext } from "../context.js";
import { AuthServiceImpl, type TotpChecker } from "./auth-service.js";
import { droppingResetTokenSink, type ResetTokenSink } from "./reset-token-sink.js";
import { PasswordHasher } from "./passwords.js";
import { SessionServiceImpl } from "./session-service.js";
import { SigningKeyStore } from "./signing-keys.js";
import { SignInThrottle } from "./throttle.js";

/** What auth shares between its services and its resolver in one started service. */
interface AuthState {
  readonly keys: SigningKeyStore;
  readonly revoked: RevokedSessions;
  readonly verifier: AccessTokenVerifier;
  readonly hasher: PasswordHasher;
  /** The brute-force counters, one per started service so that its checks of one account take turns. */
  readonly throttle: SignInThrottle;
  /** Where reset tokens go; the notifications part sets its mailer here. */
  resetTokens: ResetTokenSink;
  /** Who checks TOTP codes for Reauthenticate; the mfa part sets itself here. */
  totp?: TotpChecker;
  auth?: AuthServiceImpl;
}

const states = new WeakMap<RuntimeDeps, AuthState>();

/**
 * The auth state of one started service, created on first use: the key
 * store (also the verifier's key source, so identity verifies its own tokens
 * without a network hop) and the revocation set, fed by every replica's
 * `session.revoked` events and updated directly by this one's revocations.
 */
function authState(ctx: IdentityContext): AuthState {
  let state = states.get(ctx.deps);
  if (state === undefined) {
    const keys = new SigningKeyStore(ctx.deps.db, ctx.sealer);
    const revoked = ctx.deps.revokedSessions;
    state = { keys, revoked, verifier: new AccessTokenVerifier({ source: keys, revoked, cacheObserver: ctx.deps.metrics.cache }), hasher: new PasswordHasher(), throttle: new SignInThrottle(ctx.deps.db), resetTokens: droppingResetTokenSink };
    states.set(ctx.deps, state);
  }
  return state;
}

/**
 * The AuthService of one started service: other parts finish sign-ins
 * through it (`completeSignIn`, `openMfaChallenge`) after checking a second
 * factor or a passkey.
 */
export function authService(ctx: IdentityContext): AuthServiceImpl {
  const s = authState(ctx);
  if (s.auth === undefined) {
    const { deps, tenancy } = ctx;
    const resetTokens: ResetTokenSink = { deliver: (reset) => s.resetTokens.deliver(reset) };
    const totp: TotpChecker = { spend: (em, tenantId, userId, code) => (s.totp === undefined ? Promise.resolve("not_enrolled") : s.totp.spend(em, tenantId, userId, code)) };
    s.auth = new AuthServiceImpl({
      db: deps.db,
      events: deps.events,
      tenancy,
      keys: s.keys,
      hasher: s.hasher,
      throttle: s.throttle,
      revoked: s.revoked,
      resetTokens,
      totp,
      afterCommit: () => deps.relay.nudge(),
      logger: deps.logger.child({ part: "auth" }),
      allowlists: deps.tenantStatus,
    });
  }
  return s.auth;
}

/** The brute-force counters of one started service, shared by every part that checks a secret. */
export function signInThrottle(ctx: IdentityContext): SignInThrottle {
  return authState(ctx).throttle;
}

/** Routes reset tokens to a real delivery (the notifications part's mailer). */
export function deliverResetTokensTo(ctx: IdentityContext, sink: ResetTokenSink): void {
  authState(ctx).resetTokens = sink;
}

/** Lets Reauthenticate accept TOTP codes, checked by the mfa part (which holds the secrets). */
export function checkTotpCodesWith(ctx: IdentityContext, checker: TotpChecker): void {
  authState(ctx).totp = checker;
}

/** AuthService and SessionService. */
export function authRegistrations(ctx: IdentityContext): ServiceRegistration[] {
  const { deps, tenancy } = ctx;
  const s = authState(ctx);
  const afterCommit = (): void => deps.relay.nudge();
  const auth = authService(ctx);
  const sessions = new SessionServiceImpl({ db: deps.db, events: deps.events, tenancy, revoked: s.revoked, afterCommit });
  return [
    { service: AuthService, file: file_bulwark_identity_v1_auth_service, impl: auth as never },
    { service: SessionService, file: file_bulwark_identity_v1_session_service, impl: sessions as never },
  ];
}

/** Credential resolvers identity adds (access tokens). */
export function authResolvers(ctx: IdentityContext): CredentialResolver[] {
  return [authState(ctx).verifier];
}

/**
 * The JWKS document for `GET /.well-known/jwks.json`, once the runtime lets
 * a module add HTTP routes (see the report: `ServiceModule.httpRoutes`).
 */
export function jwksHttpRoute(ctx: IdentityContext) {
  const keys = authState(ctx).keys;
  return async () => ({ contentType: "application/jwk-set+json", body: await keys.jwksJson(), maxAgeSeconds: 300 });
}
