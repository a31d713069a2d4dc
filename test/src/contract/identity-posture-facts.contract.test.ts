/**
 * Contract of the identity RPCs that compliance's posture and retention
 * read and call: SessionService.ListTenantSessions (every live session of a
 * tenant, paged) and UserService.WarnInactiveUser (identity mails the
 * inactive user, from the event it records), on real tenancy and identity
 * with a real SMTP listener: success and every documented error.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SessionService, UserService } from "@bulwark/contracts";
import { bootstrapToken, clientFor } from "../support/harness.js";
import { refusedWith } from "./support-assert.js";
import { createUser, signIn, tenantWithSlug, type TestTenant } from "./support-auth.js";
import { eventTypesFor, identityQuery, startIdentityMesh, type IdentityMesh } from "./support-identity.js";
import { startMailbox, type Mailbox } from "./support-mail.js";

const day = 86_400_000;

describe("identity's posture facts", () => {
  let mesh: IdentityMesh;
  let mailbox: Mailbox;
  let tenant: TestTenant;

  before(async () => {
    mailbox = await startMailbox();
    mesh = await startIdentityMesh({ SMTP_URL: mailbox.url });
    tenant = await tenantWithSlug(mesh);
  });
  after(async () => {
    await mesh?.stop();
    await mailbox?.stop();
  });

  const sessionsAs = (token: string, t = tenant.id) => clientFor(SessionService, mesh.identity.baseUrl, token, "grpc", { "bulwark-tenant": t });
  const usersAs = (token: string, t = tenant.id) => clientFor(UserService, mesh.identity.baseUrl, token, "grpc", { "bulwark-tenant": t });

  test("ListTenantSessions pages through every live session of the tenant, oldest first, and no other tenant's", async () => {
    const a = await createUser(mesh, tenant);
    const b = await createUser(mesh, tenant);
    const other = await tenantWithSlug(mesh);
    const stranger = await createUser(mesh, other);
    const s1 = await signIn(mesh, a, "laptop");
    const s2 = await signIn(mesh, b, "phone");
    const s3 = await signIn(mesh, a, "tablet");
    const foreign = await signIn(mesh, stranger);
    const revoked = await signIn(mesh, b, "old");
    await identityQuery(mesh, "update $schema.sessions set revoked_at = now() where id = $1", [revoked.sessionId]);

    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await sessionsAs(bootstrapToken).listTenantSessions({ pageSize: 1, pageToken });
      assert.ok(page.sessions.length <= 1);
      for (const s of page.sessions) {
        assert.ok(s.createTime !== undefined && s.lastSeenTime !== undefined && s.userId.startsWith("usr_"));
        seen.push(s.id);
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    assert.deepEqual(seen, [s1.sessionId, s2.sessionId, s3.sessionId]);
    assert.ok(!seen.includes(foreign.sessionId) && !seen.includes(revoked.sessionId));
    const all = await sessionsAs(bootstrapToken).listTenantSessions({});
    assert.equal(all.sessions.length, 3);
    assert.equal(all.nextPageToken, "");
  });

  test("ListTenantSessions errors: INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED", async () => {
    await refusedWith(sessionsAs(bootstrapToken).listTenantSessions({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
    await refusedWith(sessionsAs(bootstrapToken).listTenantSessions({ pageSize: 5000 }), Code.InvalidArgument, "page_size");
    await refusedWith(clientFor(SessionService, mesh.identity.baseUrl).listTenantSessions({}), Code.Unauthenticated);
    const member = mesh.identity.issueToken({ id: "usr_member", kind: "user", tenantId: tenant.id, permissions: new Set(["identity.sessions.self"]) });
    await refusedWith(clientFor(SessionService, mesh.identity.baseUrl, member).listTenantSessions({}), Code.PermissionDenied);
  });

  test("WarnInactiveUser records user.inactivity_warned and identity mails the user the deletion date", async () => {
    const u = await createUser(mesh, tenant);
    await identityQuery(mesh, "update $schema.users set created_at = now() - interval '340 days' where id = $1", [u.id]);
    const deleteAt = new Date(Date.now() + 30 * day);
    const res = await usersAs(bootstrapToken).warnInactiveUser({ userId: u.id, deleteTime: timestampFromDate(deleteAt), lastActivityBefore: timestampFromDate(new Date(Date.now() - 335 * day)) });
    assert.equal(res.user?.id, u.id);
    assert.ok((await eventTypesFor(mesh, tenant.id, u.id)).includes("user.inactivity_warned"));
    const [mail] = await mailbox.await(u.email, "Your account will be deleted for inactivity");
    assert.ok(mail!.text.includes(deleteAt.toISOString().slice(0, 10)), mail!.text);
    assert.match(mail!.text, /sign in/);
  });

  test("WarnInactiveUser errors: FAILED_PRECONDITION (active since), NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED", async () => {
    const u = await createUser(mesh, tenant);
    const req = { userId: u.id, deleteTime: timestampFromDate(new Date(Date.now() + 30 * day)), lastActivityBefore: timestampFromDate(new Date(Date.now() - 335 * day)) };
    await refusedWith(usersAs(bootstrapToken).warnInactiveUser(req), Code.FailedPrecondition, "active");
    await refusedWith(usersAs(bootstrapToken).warnInactiveUser({ ...req, userId: "usr_nobody" }), Code.NotFound);
    await refusedWith(usersAs(bootstrapToken).warnInactiveUser({ ...req, userId: "nope" }), Code.InvalidArgument, "user_id");
    await refusedWith(usersAs(bootstrapToken).warnInactiveUser({ userId: u.id }), Code.InvalidArgument);
    await refusedWith(clientFor(UserService, mesh.identity.baseUrl).warnInactiveUser(req), Code.Unauthenticated);
    const reader = mesh.identity.issueToken({ id: "usr_reader", kind: "user", tenantId: tenant.id, permissions: new Set(["identity.users.read"]) });
    await refusedWith(clientFor(UserService, mesh.identity.baseUrl, reader).warnInactiveUser(req), Code.PermissionDenied);
  });
});
