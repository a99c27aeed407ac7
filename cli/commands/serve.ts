/**
 * `okeanos serve`: every HTTP API in one fastify process on one port (serve/server.ts), and
 * the NBD server (engine/nbd/server.ts) serving every volume of --store, over the embedded
 * defaults (SQLite at ./data/okeanos.db, migrations run at start; the file store ./data),
 * until SIGINT or SIGTERM; then HTTP requests and NBD requests in flight finish, volumes are
 * flushed and unlocked, and the database closes.
 *
 * Without a store at --store the HTTP APIs still start, with a warning that NBD is off.
 */
import { Option, type Command } from "commander";
import { applyServeConfig, applyServeEnvironment, readServeConfig } from "./serve-config.ts";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { createUser, ensureResources, listUsers, migrateToLatest, openDatabase, standardResources, type MetadataDatabase } from "../../db/index.ts";
import { PithosService } from "../../gateways/pithos/index.ts";
import { hashPassword } from "../../identity/password.ts";
import { Engine } from "../../engine/engine.ts";
import { isEngineError } from "../../engine/errors.ts";
import { nbdPortDefault, NbdServer } from "../../engine/nbd/server.ts";
import { openObjectStore, type RadosConnectOptions } from "../../engine/blocker/open-store.ts";
import { pino } from "pino";
import type { ComputeService } from "../../compute/service.ts";
import { buildServer } from "../../serve/server.ts";
import { volumeIoMetrics } from "../../serve/metrics.ts";
import { examples, globalOptions } from "../context.ts";
import { printReport } from "../output.ts";
import { databaseOption, databaseUrl } from "./database.ts";
import { listenError, portArgument, stderrLogger } from "./nbd.ts";
import { computeDirOption } from "./compute-context.ts";
import { computeUnavailable, prepareComputeDir, startCompute } from "./serve-compute.ts";
import { startVolumes } from "./serve-volumes.ts";

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
  /** false with --no-compute. */
  compute: boolean;
  computeDir: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve the HTTP APIs (identity: Keystone v3/v2.0, Swift v1 auth, Astakos quotas; the Swift/Pithos+ object store) on one port, and every volume over NBD, until SIGINT/SIGTERM")
    .addOption(new Option("--config <path>", "JSON file of settings (keys: port, bind, publicUrl, logLevel, serviceUsers, nbd, nbdSocket, nbdPort, compute, computeDir, database, store); flags and environment variables override it").env("OKEANOS_CONFIG"))
    .addOption(new Option("--port <port>", "TCP port (0: any free port)").argParser(portArgument).default(httpPortDefault).env("OKEANOS_PORT"))
    .addOption(new Option("--bind <address>", "address to listen on, HTTP and NBD (0.0.0.0 or :: for every interface)").default("127.0.0.1").env("OKEANOS_BIND"))
    .addOption(new Option("--public-url <url>", "base URL clients reach us at, for catalogs and public links (default: each request's own Host)").env("OKEANOS_PUBLIC_URL"))
    .addOption(new Option("--log-level <level>", "pino level: fatal, error, warn, info, debug, trace").default("info").env("OKEANOS_LOG_LEVEL"))
    .option("--service-user <user>", "a user (name or uuid) whose tokens may issue and resolve quota commissions; repeatable (env OKEANOS_SERVICE_USERS: comma-separated)", collect, [])
    .addOption(new Option("--nbd-socket <path>", "NBD on a unix socket (then no NBD TCP port unless --nbd-port is given)").env("OKEANOS_NBD_SOCKET"))
    .addOption(new Option("--nbd-port <port>", `NBD TCP port on --bind (default ${nbdPortDefault} when --nbd-socket is not given)`).argParser(portArgument).env("OKEANOS_NBD_PORT"))
    .option("--no-nbd", "do not serve NBD (env OKEANOS_NBD=0; compute needs NBD, so it is off too)")
    .option("--no-compute", "do not run servers (env OKEANOS_COMPUTE=0); on by default where qemu-system-x86_64 is installed")
    .addOption(computeDirOption())
    .addOption(databaseOption())
    .addHelpText(
      "after",
      examples(
        "okeanos serve",
        "okeanos serve --bind 0.0.0.0 --port 8080 --public-url https://cloud.example.org --service-user compute",
        "okeanos serve --database postgres://okeanos:pw@db/okeanos --nbd-socket /run/okeanos/nbd.sock",
        "okeanos serve --config /etc/okeanos/serve.json     # {\"port\": 8080, \"store\": \"file:/srv/okeanos\", \"database\": \"postgres://…\"}",
      ),
    )
    .action(async (_options: ServeOptions, command: Command) => {
      applyServeEnvironment(command);
      const configPath = command.opts<{ config?: string }>().config;
      if (configPath !== undefined) applyServeConfig(command, await readServeConfig(configPath));
      await serve(command.opts<ServeOptions>(), command);
    });
}

/**
 * The engine on --store, shared by the NBD server and the object store. On the embedded
 * default (a file store) a missing store is created, so `okeanos serve` in an empty
 * directory needs no other setup; any other missing store is an error.
 */
async function openEngine(store: string, rados: RadosConnectOptions): Promise<{ engine: Engine; created: boolean }> {
  const embedded = store.startsWith("file:");
  // `create`: the embedded default may make its directory; any other store must exist.
  const objects = await openObjectStore(store, { create: embedded, rados });
  try {
    try {
      return { engine: await Engine.open(objects), created: false };
    } catch (error) {
      if (!(isEngineError(error) && error.code === "ENO_STORE" && embedded)) throw error;
      return { engine: await Engine.init(objects), created: true };
    }
  } catch (error) {
    await objects.close();
    throw error;
  }
}

/** The NBD server over every volume of the store, or undefined with --no-nbd. */
async function startNbd(options: ServeOptions, engine: Engine, computeSocket: string | undefined): Promise<NbdServer | undefined> {
  if (!options.nbd) return undefined;
  const tcp = options.nbdPort !== undefined || options.nbdSocket === undefined ? { port: options.nbdPort ?? nbdPortDefault, host: options.bind } : undefined;
  // Compute's servers reach their disks on a unix socket: --nbd-socket, or one in the compute directory.
  const socketPath = options.nbdSocket ?? computeSocket;
  const server = new NbdServer({
    engine,
    exports: "all",
    ...(tcp === undefined ? {} : { tcp }),
    ...(socketPath === undefined ? {} : { socketPath }),
    logger: stderrLogger(process.env["OKEANOS_DEBUG"] === "1"),
  });
  try {
    await server.listen();
  } catch (error) {
    await server.close();
    await engine.close();
    throw listenError(error);
  }
  return server;
}

/** The first administrator of an empty database, with a password shown once. */
interface FirstUser {
  name: string;
  password: string;
}

export const firstUserName = "admin";

async function createFirstUser(db: MetadataDatabase): Promise<FirstUser | undefined> {
  if ((await listUsers(db, { limit: 1 })).length > 0) return undefined;
  // base64url may begin with "-": printed after `-K` it would read as an option to swift.
  const password = `p${randomBytes(12).toString("base64url")}`;
  await createUser(db, { name: firstUserName, passwordHash: await hashPassword(password) });
  return { name: firstUserName, password };
}

function loginHelp(base: string, firstUser: FirstUser | undefined): string[] {
  const name = firstUser?.name ?? "NAME";
  const password = firstUser === undefined ? "PASSWORD" : firstUser.password;
  return [
    ...(firstUser === undefined
      ? []
      : [`First user created: ${firstUser.name}, password ${firstUser.password} (shown once; change it: okeanos user modify ${firstUser.name} --password-stdin)`]),
    `Log in: swift -A ${base}/auth/v1.0 -U ${name} -K ${password} stat`,
    `        openstack --os-auth-url ${base}/identity/v3 --os-username ${name} --os-password ${password} --os-project-name ${name} \\`,
    `          --os-user-domain-name Default --os-project-domain-name Default token issue`,
    ...(firstUser === undefined ? ["        (more users: okeanos user create NAME --password-stdin)"] : []),
  ];
}

async function serve(options: ServeOptions, command: Command): Promise<void> {
  const global = globalOptions(command);
  const db = await openDatabase(databaseUrl(command));
  const stopped = new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  let engine: Engine | undefined;
  let nbd: NbdServer | undefined;
  let compute: ComputeService | undefined;
  try {
    await migrateToLatest(db);
    await ensureResources(db, standardResources);
    const firstUser = await createFirstUser(db);
    const opened = await openEngine(global.store, global.rados);
    engine = opened.engine;
    if (opened.created) process.stderr.write(`okeanos serve: created a new store at ${global.store}\n`);
    const computeOff = !options.compute ? "--no-compute" : !options.nbd ? "--no-nbd (servers' disks are served over NBD)" : computeUnavailable();
    const layout = computeOff === undefined ? await prepareComputeDir(options.computeDir) : undefined;
    // NBD first: compute's reconcile may restart servers, whose disks must be reachable.
    nbd = await startNbd(options, engine, layout?.nbdSocket);
    const logger = pino({ level: options.logLevel });
    let volumes: Awaited<ReturnType<typeof startVolumes>>;
    try {
      volumes = await startVolumes({ db, engine, nbd, logger: logger.child({ service: "volumes" }) });
      if (layout !== undefined && nbd !== undefined) {
        compute = await startCompute({ db, engine, nbd, nbdSocket: resolve(options.nbdSocket ?? layout.nbdSocket), layout, logger: logger.child({ service: "compute" }) });
      }
    } catch (error) {
      await nbd?.close();
      throw error;
    }
    const app = await buildServer({
      db,
      loggerInstance: logger,
      serviceUsers: options.serviceUser,
      pithos: new PithosService({ engine, db }),
      ...(compute !== undefined && { compute }),
      volumes,
      ...(options.publicUrl !== undefined && { publicUrl: options.publicUrl }),
    });
    const served = nbd;
    if (served !== undefined) app.metrics.addCollector(async () => volumeIoMetrics(await served.ioCounters()));
    try {
      await app.listen({ port: options.port, host: options.bind });
    } catch (error) {
      await Promise.all([compute?.close(), nbd?.close()]);
      throw error;
    }
    const address = app.server.address();
    const port = typeof address === "object" && address !== null ? address.port : options.port;
    const host = options.bind.includes(":") ? `[${options.bind}]` : options.bind;
    const base = options.publicUrl ?? `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${port}`;
    const nbdUris = nbd?.uris("NAME") ?? [];
    const text = [
      `okeanos serve: listening on ${options.bind}:${port}, database ${db.description}`,
      `  identity (Keystone v3)  ${base}/identity/v3`,
      `  Swift v1 auth           ${base}/auth/v1.0`,
      `  quotas (Astakos)        ${base}/identity/account/v1.0/quotas`,
      `  object store (Swift)    ${base}/object-store/v1/AUTH_<user uuid>   public links ${base}/public/…`,
      `  health, metrics         ${base}/healthz  ${base}/metrics`,
      ...(nbd === undefined ? ["  NBD                     off"] : nbdUris.map((uri, i) => `  ${i === 0 ? "NBD (every volume)     " : "                       "} ${uri}`)),
      `  block storage (Cinder)  ${base}/volume/v3/<user uuid>`,
      compute === undefined ? `  compute                 off: ${computeOff ?? "not started"}` : `  compute (Nova v2.1)     ${base}/compute/v2.1   servers' state in ${options.computeDir}`,
      ...loginHelp(base, firstUser),
      "SIGINT or SIGTERM stops: requests in flight finish, volumes are flushed.",
    ].join("\n");
    // The banner goes to stderr: stdout carries pino's JSON log lines.
    const json = {
      port,
      bind: options.bind,
      baseUrl: base,
      database: db.description,
      store: global.store,
      objectStore: `${base}/object-store/v1`,
      nbd: nbdUris,
      compute: compute === undefined ? null : `${base}/compute/v2.1`,
      volume: `${base}/volume/v3`,
      ...(firstUser !== undefined && { firstUser }),
    };
    if (global.json) printReport({ text, json }, true);
    else process.stderr.write(`${text}\n`);
    const signal = await stopped;
    app.log.info({ signal }, "shutting down");
    // Both at once: each lets its requests in flight finish; NBD flushes and unlocks volumes.
    // The job worker first (a running job finishes; a queued one waits for the next start);
    // servers keep running and reconnect to NBD when we come back.
    await compute?.close();
    await Promise.all([app.close(), nbd?.close()]);
  } finally {
    try {
      await engine?.close();
    } finally {
      await db.close();
    }
  }
}
