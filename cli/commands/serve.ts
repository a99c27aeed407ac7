/**
 * `okeanos serve`: every HTTP API in one fastify process on one port (serve/server.ts), over
 * the embedded defaults (SQLite at ./data/okeanos.db; migrations run at start), until SIGINT
 * or SIGTERM; then requests in flight finish and the database closes.
 */
import { InvalidArgumentError, type Command } from "commander";
import { migrateToLatest, openDatabase } from "../../db/index.ts";
import { buildServer } from "../../serve/server.ts";
import { examples, globalOptions } from "../context.ts";
import { printReport } from "../output.ts";
import { databaseOption, databaseUrl } from "./database.ts";

export const httpPortDefault = 8080;

function portArgument(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError("a TCP port is 0 to 65535");
  return port;
}

interface ServeOptions {
  port: number;
  bind: string;
  publicUrl?: string;
  logLevel: string;
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve the HTTP APIs (identity: Keystone v3/v2.0, Swift v1 auth) on one port until SIGINT/SIGTERM")
    .option("--port <port>", "TCP port (0: any free port)", portArgument, httpPortDefault)
    .option("--bind <address>", "address to listen on (0.0.0.0 or :: for every interface)", "127.0.0.1")
    .option("--public-url <url>", "base URL clients reach us at, for catalogs (default: each request's own Host)")
    .option("--log-level <level>", "pino level: fatal, error, warn, info, debug, trace", "info")
    .addOption(databaseOption())
    .addHelpText("after", examples("okeanos serve", "okeanos serve --bind 0.0.0.0 --port 8080 --public-url https://cloud.example.org", "okeanos serve --database postgres://okeanos:pw@db/okeanos"))
    .action((options: ServeOptions, command: Command) => serve(options, command));
}

async function serve(options: ServeOptions, command: Command): Promise<void> {
  const global = globalOptions(command);
  const db = await openDatabase(databaseUrl(command));
  const stopped = new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  try {
    await migrateToLatest(db);
    const app = await buildServer({
      db,
      logger: { level: options.logLevel },
      ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }),
    });
    await app.listen({ port: options.port, host: options.bind });
    const address = app.server.address();
    const port = typeof address === "object" && address !== null ? address.port : options.port;
    const host = options.bind.includes(":") ? `[${options.bind}]` : options.bind;
    const base = options.publicUrl ?? `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${port}`;
    const text = [
      `okeanos serve: listening on ${options.bind}:${port}, database ${db.description}`,
      `  identity (Keystone v3)  ${base}/identity/v3`,
      `  Swift v1 auth           ${base}/auth/v1.0`,
      `  health, metrics         ${base}/healthz  ${base}/metrics`,
      `Log in: openstack --os-auth-url ${base}/identity/v3 --os-username NAME --os-password PW --os-project-name NAME \\`,
      `          --os-user-domain-name Default --os-project-domain-name Default token issue`,
      `        (create a user first: okeanos user create NAME --password-stdin)`,
      "SIGINT or SIGTERM stops: requests in flight finish.",
    ].join("\n");
    // The banner goes to stderr: stdout carries pino's JSON log lines.
    if (global.json) printReport({ text, json: { port, bind: options.bind, baseUrl: base, database: db.description } }, true);
    else process.stderr.write(`${text}\n`);
    const signal = await stopped;
    app.log.info({ signal }, "shutting down");
    await app.close();
  } finally {
    await db.close();
  }
}
