#!/usr/bin/env node
/**
 * `bulwark`: platform administration from a shell on a machine that can
 * reach identity's database — chiefly creating the first platform operator,
 * after which operators sign in (OperatorService.SignInOperator) and the
 * bootstrap token should be rotated away (it keeps working until then).
 * A new operator has no second factor: their first sign-in gives tokens
 * that can only enrol TOTP (EnrollOperatorTotp, ConfirmOperatorTotp).
 *
 *   bulwark operator create --email ada@example.com --name "Ada Lovelace"
 *   bulwark operator list
 *   bulwark operator reset-mfa --email ada@example.com
 *   bulwark mesh keygen                 # a signing key per service (BULWARK_SERVICE_KEY, _PUBLIC_KEYS)
 *   bulwark mesh nats-config            # nats-server users and permissions, one per service
 *   bulwark keys scan PATH...           # Bulwark API keys in files: file:line and key id, never the secret
 *
 * `reset-mfa` removes an operator's second factor and ends their sessions
 * (the way back in when the only operator lost their authenticator; with
 * another operator, ResetOperatorMfa does the same).
 *
 * The password comes from BULWARK_OPERATOR_PASSWORD or standard input,
 * never from the command line, where `ps` and shell history would show it.
 * Configuration is identity's own (DATABASE_URL, DATABASE_SCHEMA,
 * EVENTS_SUBJECT_PREFIX, …): the operator is written with identity's login
 * role, and operator.created goes to identity's outbox, so the relay of a
 * running identity publishes it.
 *
 * Exit codes: 0 done, 1 failed (refused password, taken email, database
 * down; for `keys scan`: a real key was found), 2 usage error.
 */
import { parseArgs } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { describeError, loadConfig, MeshKeys } from "@bulwark/core";
import { Database } from "@bulwark/db";
import { OperatorState } from "@bulwark/contracts";
import { EventPublisher } from "@bulwark/events";
import { PasswordHasher } from "./auth/passwords.js";
import { identityModule } from "./module.js";
import { asPlatform, createOperator, findOperatorByEmail, listOperators, resetOperatorMfa } from "./operators/store.js";
import { meshKeygen, meshNatsConfig } from "./cli-mesh.js";
import { keysScan } from "./cli-keys.js";

const usage = `usage:
  bulwark operator create --email <email> --name <display name>
      (password from BULWARK_OPERATOR_PASSWORD, or from standard input)
  bulwark operator list
  bulwark operator reset-mfa --email <email>
  bulwark mesh keygen
  bulwark mesh nats-config [--prefix bulwark]
  bulwark keys scan PATH...`;

/** A command line the CLI does not understand (exit code 2). */
class UsageError extends Error {
  override name = "UsageError";
}

/** Reads the password: the environment first, else all of standard input (one line). */
async function readPassword(): Promise<string> {
  const fromEnv = process.env["BULWARK_OPERATOR_PASSWORD"];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  if (process.stdin.isTTY) process.stderr.write("Password (shown as typed; end with Enter, then Ctrl-D): ");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  if (text === "") throw new UsageError("no password: set BULWARK_OPERATOR_PASSWORD or pipe it on standard input");
  return text;
}

async function withDatabase<T>(fn: (db: Database, events: EventPublisher) => Promise<T>): Promise<T> {
  const config = loadConfig("identity");
  const db = await Database.open({ clientUrl: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, entities: [...identityModule.entities], poolMax: 2 });
  try {
    const keys = MeshKeys.fromConfig("identity", config.BULWARK_SERVICE_KEY, config.BULWARK_SERVICE_PUBLIC_KEYS);
    return await fn(db, new EventPublisher({ service: "identity", subjectPrefix: config.EVENTS_SUBJECT_PREFIX, keys }));
  } finally {
    await db.close();
  }
}

async function run(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  if (group === "mesh" && command === "keygen") return void process.stdout.write(meshKeygen());
  if (group === "mesh" && command === "nats-config") return void process.stdout.write(meshNatsConfig(rest));
  if (group === "keys") return keysCommand(command, rest);
  if (group !== "operator") throw new UsageError(`unknown command ${group ?? "(none)"}`);
  if (command === "create") {
    const { values } = parseArgs({ args: rest, options: { email: { type: "string" }, name: { type: "string" } }, strict: true });
    if (values.email === undefined || values.email.trim() === "") throw new UsageError("--email is required");
    if (values.name === undefined || values.name.trim() === "") throw new UsageError("--name is required");
    const password = await readPassword();
    const operator = await withDatabase((db, events) => createOperator({ db, events, hasher: new PasswordHasher() }, { email: values.email!, displayName: values.name!, password }));
    process.stdout.write(`${operator.id}\n`);
    return;
  }
  if (command === "reset-mfa") {
    const { values } = parseArgs({ args: rest, options: { email: { type: "string" } }, strict: true });
    if (values.email === undefined || values.email.trim() === "") throw new UsageError("--email is required");
    const operator = await withDatabase(async (db, events) => {
      const found = await asPlatform("find an operator to reset", () => db.transaction((em) => findOperatorByEmail(em, values.email!.trim().toLowerCase())));
      if (found === undefined) throw new UsageError(`no operator has the email ${values.email!.trim()}`);
      return (await resetOperatorMfa({ db, events }, found.id)).operator;
    });
    process.stdout.write(`${operator.id}\n`);
    return;
  }
  if (command === "list") {
    parseArgs({ args: rest, options: {}, strict: true });
    const operators = await withDatabase((db) => listOperators(db));
    for (const o of operators) process.stdout.write(`${o.id}\t${o.email}\t${OperatorState[o.state]}\t${o.displayName}\n`);
    return;
  }
  throw new UsageError(`unknown operator command ${command ?? "(none)"}`);
}

/** The `keys` group: `scan` reports real keys on stdout and exits 1 when it found any. */
async function keysCommand(command: string | undefined, rest: string[]): Promise<void> {
  if (command !== "scan") throw new UsageError(`unknown keys command ${command ?? "(none)"}`);
  if (rest.length === 0) throw new UsageError("keys scan needs at least one PATH");
  const result = await keysScan(rest);
  for (const line of result.lines) process.stdout.write(`${line}\n`);
  process.stderr.write(`bulwark: scanned ${result.filesScanned} files: ${result.lines.length} Bulwark keys${result.lookalikes > 0 ? `, ${result.lookalikes} key-shaped strings with a bad checksum (not keys)` : ""}\n`);
  if (result.lines.length > 0) throw new KeysFound();
}

/** `keys scan` found keys: exit 1, nothing more to say. */
class KeysFound extends Error {
  override name = "KeysFound";
}

try {
  await run(process.argv.slice(2));
  process.exitCode = 0;
} catch (err) {
  if (err instanceof KeysFound) {
    process.exitCode = 1;
  } else if (err instanceof UsageError || (err instanceof Error && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))) {
    process.stderr.write(`bulwark: ${err.message}\n${usage}\n`);
    process.exitCode = 2;
  } else if (err instanceof ConnectError) {
    process.stderr.write(`bulwark: ${err.rawMessage}\n`);
    process.exitCode = 1;
  } else {
    const { name, message } = describeError(err);
    process.stderr.write(`bulwark: ${name}: ${message}\n`);
    process.exitCode = 1;
  }
}
