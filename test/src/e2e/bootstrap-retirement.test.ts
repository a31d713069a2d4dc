/**
 * The bootstrap credential exists only to reach a fresh installation: once
 * the first platform operator is created, every service refuses it — also a
 * service that starts later — and operators sign in with their own accounts.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { OperatorService, TenancyService } from "@bulwark/contracts";
import { identityModule } from "@bulwark/identity";
import { tenancyModule } from "@bulwark/tenancy";
import { nuid } from "@nats-io/nuid";
import { streamOf } from "@bulwark/server";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { adminQuery, bootstrapToken, clientFor, dropTestService, eventually, natsUrl, startMesh, startTestService, type Started } from "../support/harness.js";
import { codeOf, expectCode } from "./support-e2e.js";
import { operatorWithTotp } from "../contract/support-operators.js";

describe("retiring the bootstrap credential", () => {
  let prefix = "";
  const retires = { BULWARK_BOOTSTRAP_RETIRES: "true" };
  let tenancy: Started;
  let identity: Started;
  let late: Started | undefined;

  before(async () => {
    ({ tenancy, identity, prefix } = await startMesh({ tenancy: tenancyModule, identity: identityModule }, retires));
  });

  after(async () => {
    await late?.stop();
    await identity?.stop();
    await tenancy?.stop();
    if (late !== undefined) await dropTestService(late.config.DATABASE_SCHEMA, prefix, "tenancy");
  });

  test("the first operator retires the bootstrap token in every service, including one started afterwards", async () => {
    const asBootstrap = clientFor(TenancyService, tenancy.baseUrl, bootstrapToken);
    assert.ok(Array.isArray((await asBootstrap.listTenants({})).tenants), "a fresh installation answers the bootstrap token");
    const email = `ops.${nuid.next().toLowerCase().slice(-8)}@example.test`;
    const password = `Quartz-meadow-${nuid.next()}-lantern`;
    await clientFor(OperatorService, identity.baseUrl, bootstrapToken).createOperator({ email, displayName: "Ada Ops", password });

    await eventually(async () => (await codeOf(asBootstrap.listTenants({}))) === "Unauthenticated", 2000, 20);
    await expectCode(clientFor(OperatorService, identity.baseUrl, bootstrapToken).listOperators({}), Code.Unauthenticated);

    const { accessToken } = (await operatorWithTotp(identity.baseUrl, email, password)).tokens;
    assert.ok(Array.isArray((await clientFor(TenancyService, tenancy.baseUrl, accessToken).listTenants({})).tenants), "the operator's own token works");

    late = await startTestService(tenancyModule, { prefix, keep: true, env: { ...retires, IDENTITY_URL: identity.baseUrl } });
    await expectCode(clientFor(TenancyService, late.baseUrl, bootstrapToken).listTenants({}), Code.Unauthenticated);
  });

  test("once retired it stays retired: a service restarted after identity's stream was lost still refuses the bootstrap token", async () => {
    assert.ok(late !== undefined, "runs after the first test");
    await eventually(async () => (await adminQuery(`select count(*)::int as n from "${late!.config.DATABASE_SCHEMA}".runtime_state where key = 'bootstrap_retired'`))[0]?.n === 1, 3000, 50);
    await late.stop();
    const nc = await connect({ servers: natsUrl });
    try {
      await (await jetstreamManager(nc)).streams.delete(streamOf(prefix, "identity").name);
    } finally {
      await nc.close();
    }
    late = await startTestService(tenancyModule, { reuse: { schema: late.config.DATABASE_SCHEMA, prefix }, keep: true, env: { ...retires, IDENTITY_URL: identity.baseUrl } });
    await expectCode(clientFor(TenancyService, late.baseUrl, bootstrapToken).listTenants({}), Code.Unauthenticated);
  });
});
