#!/usr/bin/env node
/**
 * `npm start`: migrates every service's schema, then starts every service of
 * the mesh that exists, each in its own process, against the local Postgres
 * and NATS, and prints how to call them. Ctrl-C stops them all gracefully.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ports = { tenancy: 50051, identity: 50052, keys: 50053, audit: 50054, compliance: 50055 };
const services = Object.keys(ports).filter((s) => existsSync(join(root, "services", s, "dist", "src", "main.js")));
const token = process.env.BULWARK_BOOTSTRAP_TOKEN ?? "bulwark-dev-bootstrap-token";

function reachable(url, fallbackPort) {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: u.hostname, port: Number(u.port || fallbackPort) });
    socket.setTimeout(1500);
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => (socket.destroy(), resolve(false)));
  });
}

const pgUrl = process.env.DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/bulwark";
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
if (!(await reachable(pgUrl, 5432))) {
  console.error(`Postgres is not answering at ${new URL(pgUrl).host}. Start it, e.g.:\n  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`);
  process.exit(1);
}
if (!(await reachable(natsUrl, 4222))) {
  console.error(`NATS is not answering at ${new URL(natsUrl).host}. Start it with JetStream, e.g.:\n  nats-server -a 127.0.0.1 -p 4222 -js`);
  process.exit(1);
}

for (const s of services) {
  const r = spawnSync(process.execPath, [join(root, "services", s, "dist", "src", "migrate.js")], { stdio: "inherit", env: process.env });
  if (r.status !== 0) {
    console.error(`migrating ${s} failed`);
    process.exit(r.status ?? 1);
  }
}

const children = services.map((s) => {
  const child = spawn(process.execPath, [join(root, "services", s, "dist", "src", "main.js")], { stdio: "inherit", env: process.env });
  child.once("exit", (code, signal) => {
    if (!stopping) {
      console.error(`${s} exited (${signal ?? code}); stopping the mesh`);
      stop();
    }
  });
  return child;
});

let stopping = false;
function stop() {
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
}
process.once("SIGINT", stop);
process.once("SIGTERM", stop);

setTimeout(() => {
  const lines = services.map((s) => `  ${s.padEnd(11)} 127.0.0.1:${ports[s]}  (gRPC, Connect, gRPC-Web; health and reflection)`);
  console.log(`
Bulwark is running:
${lines.join("\n")}

Bootstrap operator credential (development default; set BULWARK_BOOTSTRAP_TOKEN):
  authorization: Bearer ${token}

Try:
  npx buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer ${token}" \\
    -d '{"slug":"acme","display_name":"Acme Inc.","region":"REGION_EU"}' \\
    http://127.0.0.1:50051/bulwark.tenancy.v1.TenancyService/CreateTenant
  npx buf curl -d '{"slug":"acme"}' http://127.0.0.1:50051/bulwark.tenancy.v1.TenancyService/ResolveTenant

Ctrl-C stops every service gracefully.
`);
}, 2500).unref();

await Promise.all(children.map((c) => new Promise((r) => c.once("exit", r))));
process.exit(children.every((c) => c.exitCode === 0 || c.signalCode === "SIGTERM") ? 0 : 1);
