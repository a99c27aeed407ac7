/**
 * `okeanos nbd serve`: serve volumes, snapshots and images to hypervisors and NBD tools
 * (qemu, nbdkit's and libnbd's clients, the kernel's nbd-client) until SIGINT or SIGTERM,
 * then shut down gracefully: in-flight requests finish, volumes are flushed and unlocked.
 */
import { InvalidArgumentError, type Command } from "commander";
import { syncIoSummary } from "../../engine/blocker/sync-io.ts";
import type { Engine } from "../../engine/engine.ts";
import { openControlSocket } from "../../engine/nbd/control.ts";
import type { Logger } from "../../engine/nbd/logger.ts";
import { nbdPortDefault, NbdServer } from "../../engine/nbd/server.ts";
import { tlsConfigFromOptions } from "../../engine/nbd/tls.ts";
import { examples, globalOptions, withEngine, type GlobalOptions } from "../context.ts";
import { printReport, UsageError } from "../output.ts";

interface ServeOptions {
  socket?: string;
  port?: number;
  bind: string;
  readOnly?: boolean;
  all?: boolean;
  tls?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsDir?: string;
}

export function registerNbdCommands(program: Command): void {
  const nbd = program.command("nbd").description("serve volumes over the NBD protocol");
  nbd
    .command("serve [names...]")
    .description("serve volumes, snapshots and images over NBD until SIGINT/SIGTERM (snapshots and images are read-only)")
    .option("--socket <path>", "listen on a unix socket")
    .option("--port <port>", `listen on a TCP port (default ${nbdPortDefault} when --socket is not given)`, portArgument)
    .option("--bind <address>", "TCP address to listen on (0.0.0.0 or :: for every interface)", "127.0.0.1")
    .option("--read-only", "serve everything read-only (volumes are opened without their writer lock)")
    .option("--all", "serve every volume, snapshot and image in the store, by name")
    .option("--tls <mode>", "STARTTLS: off, optional or require (default: require when certificates are given, else off)")
    .option("--tls-cert <file>", "server certificate (PEM; may carry its chain)")
    .option("--tls-key <file>", "the certificate's private key (PEM, unencrypted)")
    .option("--tls-ca <file>", "CA certificate(s) (PEM): clients must present a certificate signed by it")
    .option("--tls-dir <dir>", "qemu's layout instead: server-cert.pem, server-key.pem, and ca-cert.pem (clients must present a certificate it signed)")
    .addHelpText(
      "after",
      examples(
        "okeanos nbd serve vm1 --socket /run/okeanos/vm1.sock",
        "okeanos nbd serve --all --port 10809 --bind 0.0.0.0",
        "okeanos nbd serve --all --port 10809 --bind 0.0.0.0 --tls-dir /etc/pki/qemu",
        "qemu-system-x86_64 -drive file=nbd+unix:///vm1?socket=/run/okeanos/vm1.sock,format=raw …",
      ),
    )
    .action((names: string[], options: ServeOptions, command: Command) => serve(globalOptions(command), names, options));
}

export function portArgument(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`${text} is not a TCP port`);
  return port;
}

async function serve(global: GlobalOptions, names: string[], options: ServeOptions): Promise<void> {
  if (options.all === true && names.length > 0) throw new UsageError("give export names or --all, not both");
  if (options.all !== true && names.length === 0) throw new UsageError("name the volumes to serve, or pass --all");
  const tcp = options.port !== undefined || options.socket === undefined ? { port: options.port ?? nbdPortDefault, host: options.bind } : undefined;
  // Certificates are checked before the store is opened: a bad file fails at once, clearly.
  const tls = await tlsConfigFromOptions({ mode: options.tls, certFile: options.tlsCert, keyFile: options.tlsKey, caFile: options.tlsCa, dir: options.tlsDir });
  await withEngine(global, async (engine) => {
    await checkExportsExist(engine, names);
    const server = new NbdServer({
      engine,
      exports: options.all === true ? "all" : names,
      readOnly: options.readOnly === true,
      ...(tcp === undefined ? {} : { tcp }),
      ...(options.socket === undefined ? {} : { socketPath: options.socket }),
      logger: stderrLogger(process.env["OKEANOS_DEBUG"] === "1"),
      tls,
    });
    try {
      await server.listen();
    } catch (error) {
      await server.close();
      throw listenError(error);
    }
    const signalled = nextSignal(); // from here on a signal means a graceful shutdown
    // `okeanos volume snapshot` of a volume we hold reaches us here (docs/nbd.md, "Control socket").
    const control = await openControlSocket(server, { logger: stderrLogger(process.env["OKEANOS_DEBUG"] === "1") });
    const shown = options.all === true ? "NAME" : (names[0] as string);
    const uris = server.uris(shown);
    const text = [
      `Serving ${options.all === true ? "every volume, snapshot and image" : names.join(", ")} over NBD${options.readOnly === true ? " (read-only)" : ""}`,
      ...uris.map((uri) => `  ${uri}`),
      ...(tls === undefined ? [] : [`TLS ${tls.mode === "require" ? "required" : "optional"}: ${tls.subject}, valid until ${tls.validTo.toISOString()}${tls.verifyPeer ? `; client certificates must be signed by ${tls.files.caFile}` : ""}`]),
      ...(control === undefined ? [] : [`Control socket: ${control.path} (okeanos volume snapshot/resize of a served volume)`]),
      "SIGINT or SIGTERM stops: in-flight requests finish, volumes are flushed.",
    ].join("\n");
    printReport({ text, json: { exports: options.all === true ? "all" : names, readOnly: options.readOnly === true, addresses: server.addresses, uris, controlSocket: control?.path ?? null, tls: tls?.mode ?? "off" } }, global.json);
    const signal = await signalled;
    process.stderr.write(`okeanos nbd: ${signal}: shutting down\n`);
    await control?.close();
    await server.close();
    // Backoffs say the page cache or the disk pushed back (sync-io.ts): worth an operator's look.
    process.stderr.write(`okeanos nbd: fast-path I/O since start: ${syncIoSummary()}\n`);
  });
}

/** A misspelled name should fail at start, not at the first client's GO. */
async function checkExportsExist(engine: Engine, names: readonly string[]): Promise<void> {
  for (const name of names) await engine.maps.lookup(name);
}

export function listenError(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL" || code === "ENOENT") {
    return new UsageError(`cannot listen: ${(error as Error).message}`);
  }
  return error;
}

/** Resolves with the first SIGINT/SIGTERM; a second one exits at once. */
function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.once("SIGINT", () => process.exit(1));
      process.once("SIGTERM", () => process.exit(1));
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

/** One line per event on stderr: `okeanos nbd: message key=value …`. */
export function stderrLogger(debug: boolean): Logger {
  const line = (fields: Record<string, unknown>, message: string) => {
    const details = Object.entries(fields).map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
    process.stderr.write(`okeanos nbd: ${[message, ...details].join(" ")}\n`);
  };
  return { debug: debug ? line : () => undefined, info: debug ? line : () => undefined, warn: line, error: line };
}
