/**
 * `okeanos serve`: every HTTP API in one fastify process on one port (serve/server.ts), and
 * the NBD server (engine/nbd/server.ts) serving every volume of --store, over the embedded
 * defaults (SQLite at ./data/okeanos.db, migrations run at start; the file store ./data),
 * until SIGINT or SIGTERM; then HTTP requests and NBD requests in flight finish, volumes are
 * flushed and unlocked, and the database closes.
 *
 * Without a store at --store the HTTP APIs still start, with a warning that NBD is off.
 */
import { type Command } from "commander";
import { ensureResources, migrateToLatest, openDatabase, standardResources } from "../../db/index.ts";
import { Engine } from "../../engine/engine.ts";
import { isEngineError } from "../../engine/errors.ts";
import { nbdPortDefault, NbdServer } from "../../engine/nbd/server.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { buildServer } from "../../serve/server.ts";
import { examples, globalOptions } from "../context.ts";
import { printReport } from "../output.ts";
import { databaseOption, databaseUrl } from "./database.ts";
import { listenError, portArgument, stderrLogger } from "./nbd.ts";

export const httpPortDefault = 8080;

interface ServeOptions {
  port: number;
  bind: string;
  publicUrl?: string;
  logLevel: string;
  serviceUser: string[];
  /** false with --no-nbd. */
  nbd: boolean;
  nbdSocket?: string;
  nbdPort?: number;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve the HTTP APIs (identity: Keystone v3/v2.0, Swift v1 auth, Astakos quotas) on one port, and every volume over NBD, until SIGINT/SIGTERM")
    .option("--port <port>", "TCP port (0: any free port)", portArgument, httpPortDefault)
    .option("--bind <address>", "address to listen on, HTTP and NBD (0.0.0.0 or :: for every interface)", "127.0.0.1")
    .option("--public-url <url>", "base URL clients reach us at, for catalogs (default: each request's own Host)")
    .option("--log-level <level>", "pino level: fatal, error, warn, info, debug, trace", "info")
    .option("--service-user <user>", "a user (name or uuid) whose tokens may issue and resolve quota commissions; repeatable", collect, [])
    .option("--nbd-socket <path>", "NBD on a unix socket (then no NBD TCP port unless --nbd-port is given)")
    .option("--nbd-port <port>", `NBD TCP port on --bind (default ${nbdPortDefault} when --nbd-socket is not given)`, portArgument)
    .option("--no-nbd", "do not serve NBD")
    .addOption(databaseOption())
    .addHelpText(
      "after",
      examples(
        "okeanos serve",
        "okeanos serve --bind 0.0.0.0 --port 8080 --public-url https://cloud.example.org --service-user compute",
        "okeanos serve --database postgres://okeanos:pw@db/okeanos --nbd-socket /run/okeanos/nbd.sock",
      ),
    )
    .action((options: ServeOptions, command: Command) => serve(options, command));
}

/** The NBD server over every volume of the store, or undefined (--no-nbd, or no store yet). */
async function startNbd(options: ServeOptions, store: string): Promise<{ server: NbdServer; engine: Engine } | undefined> {
  if (!options.nbd) return undefined;
  let engine: Engine;
  try {
    const objects = await openObjectStore(store);
    try {
      engine = await Engine.open(objects);
    } catch (error) {
      await objects.close();
      throw error;
    }
  } catch (error) {
    if (isEngineError(error) && error.code === "ENO_STORE") {
      process.stderr.write(`okeanos serve: no store at ${store}: NBD is off (okeanos store init creates one)\n`);
      return undefined;
    }
    throw error;
  }
  const tcp = options.nbdPort !== undefined || options.nbdSocket === undefined ? { port: options.nbdPort ?? nbdPortDefault, host: options.bind } : undefined;
  const server = new NbdServer({
    engine,
    exports: "all",
    ...(tcp === undefined ? {} : { tcp }),
    ...(options.nbdSocket === undefined ? {} : { socketPath: options.nbdSocket }),
    logger: stderrLogger(process.env["OKEANOS_DEBUG"] === "1"),
  });
  try {
    await server.listen();
  } catch (error) {
    await server.close();
    await engine.close();
    throw listenError(error);
  }
  return { server, engine };
}

async function serve(options: ServeOptions, command: Command): Promise<void> {
  const global = globalOptions(command);
  const db = await openDatabase(databaseUrl(command));
  const stopped = new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  let nbd: { server: NbdServer; engine: Engine } | undefined;
  try {
    await migrateToLatest(db);
    await ensureResources(db, standardResources);
    const app = await buildServer({
      db,
      logger: { level: options.logLevel },
      serviceUsers: options.serviceUser,
      ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }),
    });
    await app.listen({ port: options.port, host: options.bind });
    try {
      nbd = await startNbd(options, global.store);
    } catch (error) {
      await app.close(); // else the HTTP server would keep the process alive over a closed database
      throw error;
    }
    const address = app.server.address();
    const port = typeof address === "object" && address !== null ? address.port : options.port;
    const host = options.bind.includes(":") ? `[${options.bind}]` : options.bind;
    const base = options.publicUrl ?? `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${port}`;
    const nbdUris = nbd?.server.uris("NAME") ?? [];
    const text = [
      `okeanos serve: listening on ${options.bind}:${port}, database ${db.description}`,
      `  identity (Keystone v3)  ${base}/identity/v3`,
      `  Swift v1 auth           ${base}/auth/v1.0`,
      `  quotas (Astakos)        ${base}/identity/account/v1.0/quotas`,
      `  health, metrics         ${base}/healthz  ${base}/metrics`,
      ...(nbd === undefined ? ["  NBD                     off"] : nbdUris.map((uri, i) => `  ${i === 0 ? "NBD (every volume)     " : "                       "} ${uri}`)),
      `Log in: openstack --os-auth-url ${base}/identity/v3 --os-username NAME --os-password PW --os-project-name NAME \\`,
      `          --os-user-domain-name Default --os-project-domain-name Default token issue`,
      `        (create a user first: okeanos user create NAME --password-stdin)`,
      "SIGINT or SIGTERM stops: requests in flight finish, volumes are flushed.",
    ].join("\n");
    // The banner goes to stderr: stdout carries pino's JSON log lines.
    if (global.json) printReport({ text, json: { port, bind: options.bind, baseUrl: base, database: db.description, nbd: nbdUris } }, true);
    else process.stderr.write(`${text}\n`);
    const signal = await stopped;
    app.log.info({ signal }, "shutting down");
    // Both at once: each lets its requests in flight finish; NBD flushes and unlocks volumes.
    await Promise.all([app.close(), nbd?.server.close()]);
  } finally {
    try {
      await nbd?.engine.close();
    } finally {
      await db.close();
    }
  }
}
