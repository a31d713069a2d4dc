/**
 * The Helm chart (deploy/helm/bulwark) renders what matters for every
 * service in values.services, the same shape each: probes on the gRPC
 * port, a locked-down security context, resource requests, secrets only by
 * reference to an existing Secret (plain values only in development mode),
 * h2c Services, migration Jobs as pre-install/pre-upgrade hooks, metrics
 * scraped; and PDB, HPA, NetworkPolicy and ServiceMonitor per service when
 * on. Needs the helm CLI (HELM, PATH, or $(go env GOPATH)/bin); skipped
 * without it, as deploy/scripts/helm-check.sh is.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadAll } from "js-yaml";

const chart = fileURLToPath(new URL("../../../deploy/helm/bulwark", import.meta.url));

function helmBinary(): string | undefined {
  const candidates = [process.env["HELM"], "helm"];
  for (const go of ["go", "/usr/local/go/bin/go"]) {
    const r = spawnSync(go, ["env", "GOPATH"], { encoding: "utf8" });
    if (r.status === 0) candidates.push(join(r.stdout.trim(), "bin", "helm"));
  }
  for (const c of candidates) {
    if (c === undefined || (c.includes("/") && !existsSync(c))) continue;
    if (spawnSync(c, ["version", "--short"], { encoding: "utf8" }).status === 0) return c;
  }
  return undefined;
}

const helm = helmBinary();

/** A rendered Kubernetes object, loosely typed. */
type K8s = { kind: string; metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> }; spec?: Record<string, unknown> } & Record<string, unknown>;

function render(set: string[]): { objects: K8s[]; text: string; error: string; ok: boolean } {
  const r = spawnSync(helm!, ["template", "t", chart, "--namespace", "bulwark", ...set.flatMap((s) => ["--set", s])], { encoding: "utf8" });
  if (r.status !== 0) return { objects: [], text: "", error: r.stderr, ok: false };
  return { objects: (loadAll(r.stdout) as (K8s | null)[]).filter((o): o is K8s => o !== null), text: r.stdout, error: r.stderr, ok: true };
}

/** Every service the chart knows (values.services), read from the default values. */
function chartServices(): string[] {
  const r = spawnSync(helm!, ["show", "values", chart], { encoding: "utf8" });
  const values = loadAll(r.stdout)[0] as { services: Record<string, unknown> };
  return Object.keys(values.services);
}

const sentinel = "Sentinel-secret-value-0123456789abcdefghijk"; // 43 characters: a valid master key too

describe("the Helm chart", { skip: helm === undefined ? "helm is not installed" : false }, () => {
  const services = helm === undefined ? [] : chartServices();
  const allOn = (replicas: number): string[] => services.flatMap((s) => [`services.${s}.enabled=true`, `services.${s}.replicas=${replicas}`]);
  const optional = ["defaults.autoscaling.enabled=true", "networkPolicy.enabled=true", "metrics.serviceMonitor.enabled=true", "metrics.port=9464"];

  test("lists all five services, each rendered with the same set of objects", () => {
    assert.deepEqual([...services].sort(), ["audit", "compliance", "identity", "keys", "tenancy"]);
    const { objects, ok, error } = render([...allOn(3), ...optional]);
    assert.ok(ok, error);
    for (const s of services) {
      const kinds = objects.filter((o) => o.metadata.name === `t-bulwark-${s}` || o.metadata.name === `t-bulwark-${s}-migrate`).map((o) => o.kind).sort();
      assert.deepEqual(kinds, ["Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceMonitor"], s);
    }
  });

  test("every Deployment has probes on the gRPC port, a locked-down security context and resource requests", () => {
    const { objects, ok, error } = render(allOn(3));
    assert.ok(ok, error);
    const deployments = objects.filter((o) => o.kind === "Deployment");
    assert.equal(deployments.length, services.length);
    for (const d of deployments) {
      const spec = d.spec as { replicas: number; template: { spec: { securityContext: Record<string, unknown>; automountServiceAccountToken: boolean; containers: Record<string, any>[] } } };
      assert.equal(spec.replicas, 3, d.metadata.name);
      const pod = spec.template.spec;
      assert.equal(pod.securityContext["runAsNonRoot"], true);
      assert.deepEqual(pod.securityContext["seccompProfile"], { type: "RuntimeDefault" });
      assert.equal(pod.automountServiceAccountToken, false);
      for (const c of pod.containers) {
        assert.equal(typeof c["readinessProbe"].grpc.port, "number", `${d.metadata.name}: gRPC readiness probe`);
        assert.ok(c["livenessProbe"] !== undefined && c["startupProbe"] !== undefined, `${d.metadata.name}: liveness and startup probes`);
        assert.equal(c["securityContext"].allowPrivilegeEscalation, false);
        assert.equal(c["securityContext"].readOnlyRootFilesystem, true);
        assert.deepEqual(c["securityContext"].capabilities.drop, ["ALL"]);
        assert.ok(c["resources"].requests.cpu !== undefined && c["resources"].requests.memory !== undefined, `${d.metadata.name}: requests`);
        assert.ok(c["resources"].limits.memory !== undefined, `${d.metadata.name}: memory limit`);
        const env = c["env"] as { name: string; value?: string }[];
        assert.equal(env.find((e) => e.name === "PUBLIC_RATE_LIMIT_PER_MINUTE")?.value, "300", "the public rate limit is on");
        assert.equal(env.find((e) => e.name === "NATS_REPLICAS")?.value, "3");
      }
    }
  });

  test("secrets come only from the existing Secret: no Secret object, every credential a secretKeyRef", () => {
    const { objects, text, ok, error } = render([...allOn(2), ...optional]);
    assert.ok(ok, error);
    assert.equal(objects.filter((o) => o.kind === "Secret").length, 0, "the chart creates no Secret");
    const credential = /TOKEN|SECRET|PASSWORD|PEPPER|MASTER_KEYS|SERVICE_KEY$/;
    for (const o of objects.filter((x) => x.kind === "Deployment" || x.kind === "Job")) {
      const containers = (o.spec as { template: { spec: { containers: { env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string } } }[] }[] } } }).template.spec.containers;
      for (const e of containers.flatMap((c) => c.env ?? [])) {
        if (!credential.test(e.name) || e.name === "BULWARK_SERVICE_PUBLIC_KEYS") continue;
        assert.equal(e.value, undefined, `${o.metadata.name}: ${e.name} has a plain value`);
        assert.equal(e.valueFrom?.secretKeyRef?.name, "bulwark-secrets", `${o.metadata.name}: ${e.name} from the existing Secret`);
      }
      for (const e of containers.flatMap((c) => c.env ?? []).filter((x) => /_URL$/.test(x.name) && x.value !== undefined)) assert.doesNotMatch(e.value!, /:[^/@$]+@/, `${e.name} carries no password`);
    }
    assert.doesNotMatch(text, /kind: Secret\b/);
  });

  test("a secret value in the values fails the release outside development mode, and development mode is the only way to render one", () => {
    for (const set of [`secrets.bootstrapToken=${sentinel}`, `secrets.masterKeys=v1:${sentinel}`, `postgres.admin.password=${sentinel}`, `services.tenancy.database.password=${sentinel}`, `secrets.natsPasswords.keys=${sentinel}`]) {
      const r = render([set]);
      assert.equal(r.ok, false, set);
      assert.match(r.error, /developmentMode/);
      assert.doesNotMatch(r.error, new RegExp(sentinel));
    }
    assert.match(render(["secrets.existingSecret="]).error, /secrets\.existingSecret must name/);
    const dev = render(["secrets.developmentMode=true", `secrets.bootstrapToken=${sentinel}`]);
    assert.ok(dev.ok, dev.error);
    const secret = dev.objects.filter((o) => o.kind === "Secret");
    assert.equal(secret.length, 1);
    assert.equal(secret[0]!.metadata.annotations?.["helm.sh/hook"], "pre-install,pre-upgrade");
    assert.doesNotMatch(dev.text, new RegExp(sentinel), "even in development mode the value is only base64 inside the Secret");
  });

  test("Services speak h2c, migrations are hooks, metrics are scraped", () => {
    const { objects, ok, error } = render(allOn(2));
    assert.ok(ok, error);
    for (const svc of objects.filter((o) => o.kind === "Service")) {
      const ports = (svc.spec as { ports: { name: string; appProtocol?: string }[] }).ports;
      assert.equal(ports.find((p) => p.name === "grpc")?.appProtocol, "kubernetes.io/h2c", svc.metadata.name);
    }
    const jobs = objects.filter((o) => o.kind === "Job");
    assert.equal(jobs.length, services.length, "one migration Job per service");
    for (const j of jobs) {
      assert.equal(j.metadata.annotations?.["helm.sh/hook"], "pre-install,pre-upgrade", j.metadata.name);
      assert.match(JSON.stringify(j.spec), /migrate\.js/);
    }
    for (const d of objects.filter((o) => o.kind === "Deployment")) {
      const a = (d.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations;
      assert.equal(a["prometheus.io/scrape"], "true");
      assert.equal(a["prometheus.io/path"], "/metrics");
      assert.match(a["prometheus.io/port"] ?? "", /^\d+$/);
    }
    const monitored = render([...allOn(2), "metrics.serviceMonitor.enabled=true", "metrics.port=9464"]);
    for (const m of monitored.objects.filter((o) => o.kind === "ServiceMonitor")) {
      assert.deepEqual((m.spec as { endpoints: { port: string; path: string }[] }).endpoints.map((e) => [e.port, e.path]), [["metrics", "/metrics"]]);
    }
    assert.equal(monitored.objects.filter((o) => o.kind === "ServiceMonitor").length, services.length);
  });

  test("each optional resource renders only when switched on", () => {
    const off = render([...allOn(2), "defaults.podDisruptionBudget.enabled=false", "tests.enabled=false", "migrations.enabled=false", "serviceAccount.create=false"]);
    assert.ok(off.ok, off.error);
    assert.deepEqual([...new Set(off.objects.map((o) => o.kind))].sort(), ["Deployment", "Service"]);
  });
});
