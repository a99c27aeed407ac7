/**
 * The okeanos command line: builds the command tree, runs one command, turns any failure
 * into one line on stderr and an exit code (output.ts has the table).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Command, CommanderError, Option } from "commander";
import { storeUriDefault } from "./context.ts";
import { scanArgs } from "./early-store.ts";
import { errorLines, exitCodeOf, exitCodes } from "./output.ts";

type Register = (program: Command) => void;

/**
 * Each top-level command's module, loaded only when that command runs: a command then starts
 * without parsing the others (the database driver, the HTTP server, QEMU's driver…), which
 * is most of a short command's wall time. Order is the help's order.
 */
const commandModules: ReadonlyArray<readonly [string, () => Promise<Register>]> = [
  ["store", async () => (await import("./commands/store.ts")).registerStoreCommands],
  ["volume", async () => (await import("./commands/volume.ts")).registerVolumeCommands],
  ["gc", async () => (await import("./commands/gc.ts")).registerGcCommand],
  ["nbd", async () => (await import("./commands/nbd.ts")).registerNbdCommands],
  ["serve", async () => (await import("./commands/serve.ts")).registerServeCommand],
  ["user", async () => (await import("./commands/user.ts")).registerUserCommands],
  ["token", async () => (await import("./commands/token.ts")).registerTokenCommands],
  ["quota", async () => (await import("./commands/quota.ts")).registerQuotaCommands],
  ["file", async () => (await import("./commands/file.ts")).registerFileCommands],
  ["image", async () => (await import("./commands/image.ts")).registerImageCommands],
  ["flavor", async () => (await import("./commands/flavor.ts")).registerFlavorCommands],
  ["server", async () => (await import("./commands/server.ts")).registerServerCommands],
];

/**
 * The command the arguments name, when it is one of ours; otherwise (help, a typo that
 * deserves a suggestion, no command at all) undefined, and every command is loaded.
 */
export function commandNamed(args: readonly string[]): string | undefined {
  const { firstWord } = scanArgs(args);
  return commandModules.some(([name]) => name === firstWord) ? firstWord : undefined;
}

/** `okeanos --version` (no command, no help asked): prints the version and needs no command's module. */
export function asksForVersionOnly(args: readonly string[]): boolean {
  return commandNamed(args) === undefined && args.some((arg) => arg === "-V" || arg === "--version") && !args.some((arg) => arg === "-h" || arg === "--help");
}

/** The program with every command, or only the one `args` runs (none for --version). */
export async function buildProgram(args?: readonly string[]): Promise<Command> {
  const only = args === undefined ? undefined : commandNamed(args);
  const none = args !== undefined && asksForVersionOnly(args);
  const registers = await Promise.all(commandModules.filter(([name]) => !none && (only === undefined || name === only)).map(([, load]) => load()));
  const program = new Command("okeanos")
    .description("storage-first IaaS: volumes of fixed-size blocks with copy-on-write snapshots and clones")
    .version(packageVersion(), "-V, --version", "print the version")
    .addOption(
      new Option("--store <uri>", "object store: file:PATH (or a bare path), rados:POOL[/NAMESPACE] (Ceph), memory: (tests)").env("OKEANOS_STORE").default(storeUriDefault),
    )
    .addOption(new Option("--ceph-conf <path>", "rados: stores: the ceph.conf to connect with (default: Ceph's search path)").env("CEPH_CONF"))
    .addOption(new Option("--ceph-id <name>", "rados: stores: the Ceph client id, without `client.` (default: admin)").env("CEPH_ID"))
    .option("--json", "print the result as JSON on stdout (for scripts)")
    .showSuggestionAfterError()
    // Errors are ours to print (one line, `okeanos: …`) and ours to turn into exit codes.
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .addHelpText(
      "after",
      `
Examples:
  $ okeanos store init
  $ okeanos volume import disk.raw vm1
  $ okeanos volume snapshot vm1 vm1-monday && okeanos volume clone vm1-monday vm2
  $ OKEANOS_STORE=file:/srv/okeanos okeanos volume list --json

Run \`okeanos <command> --help\` for a command's options and examples.`,
    );
  for (const register of registers) register(program);
  return program;
}

/** Runs one command line (without `node` and the script); returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    await (await buildProgram(args)).parseAsync([...args], { from: "user" });
    return exitCodes.ok;
  } catch (error) {
    // --help, --version, and a bare group like `okeanos volume` print help and stop.
    if (error instanceof CommanderError && ["commander.helpDisplayed", "commander.version", "commander.help"].includes(error.code)) {
      return error.exitCode === 0 ? exitCodes.ok : exitCodes.usage;
    }
    for (const line of errorLines(error, process.env["OKEANOS_DEBUG"] === "1")) process.stderr.write(`${line}\n`);
    return exitCodeOf(error);
  }
}

/** The version in package.json: found upward from here, from cli/ in a checkout or dist/cli/ when installed. */
function packageVersion(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (manifest.name === "okeanos" && manifest.version !== undefined) return manifest.version;
    } catch {
      // not here: keep looking upward
    }
    if (dirname(dir) === dir) return "unknown";
  }
}
