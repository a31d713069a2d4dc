import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { defaultPorts, privateKeyFromSeed, rawPublicKey } from "@bulwark/core";
import { natsAuthorizationConfig } from "@bulwark/events";

/** The services of the mesh, in port order. */
const services = Object.keys(defaultPorts);

/**
 * `bulwark mesh keygen`: a fresh Ed25519 key for every service, as the
 * environment wants them. Each service gets only its own BULWARK_SERVICE_KEY
 * (a secret); every service gets the same BULWARK_SERVICE_PUBLIC_KEYS.
 */
export function meshKeygen(): string {
  const lines = ["# BULWARK_SERVICE_KEY: a secret; give each service only its own."];
  const publics: string[] = [];
  for (const service of services) {
    const seed = randomBytes(32);
    lines.push(`${service}: BULWARK_SERVICE_KEY=${seed.toString("base64url")}`);
    publics.push(`${service}=${rawPublicKey(privateKeyFromSeed(seed))}`);
  }
  lines.push("# BULWARK_SERVICE_PUBLIC_KEYS: public; the same for every service.");
  lines.push(`BULWARK_SERVICE_PUBLIC_KEYS=${publics.join(",")}`);
  return `${lines.join("\n")}\n`;
}

/**
 * `bulwark mesh nats-config [--prefix bulwark]`: the authorization block of
 * a nats-server configuration with one user per service and fresh
 * passwords, and the NATS_USER / NATS_PASSWORD each service is started with.
 */
export function meshNatsConfig(args: string[]): string {
  const { values } = parseArgs({ args, options: { prefix: { type: "string", default: "bulwark" } }, strict: true });
  const prefix = values.prefix ?? "bulwark";
  const users = services.map((service) => ({ service, password: randomBytes(24).toString("base64url") }));
  const env = users.map((u) => `#   ${u.service}: NATS_USER=${u.service} NATS_PASSWORD=${u.password}`);
  return `# nats-server authorization for the Bulwark mesh (subject prefix "${prefix}").\n# Start each service with its own credentials:\n${env.join("\n")}\n${natsAuthorizationConfig(prefix, users)}`;
}
