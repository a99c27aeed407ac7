/**
 * The okeanos command line: builds the command tree, runs one command, turns any failure
 * into one line on stderr and an exit code (output.ts has the table).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Command, CommanderError, Option } from "commander";
import { storeUriDefault } from "./context.ts";
import { errorLines, exitCodeOf, exitCodes } from "./output.ts";
import { registerFileCommands } from "./commands/file.ts";
import { registerFlavorCommands } from "./commands/flavor.ts";
import { registerServerCommands } from "./commands/server.ts";
import { registerImageCommands } from "./commands/image.ts";
import { registerGcCommand } from "./commands/gc.ts";
import { registerNbdCommands } from "./commands/nbd.ts";
import { registerServeCommand } from "./commands/serve.ts";
import { registerQuotaCommands } from "./commands/quota.ts";
import { registerTokenCommands } from "./commands/token.ts";
import { registerUserCommands } from "./commands/user.ts";
import { registerStoreCommands } from "./commands/store.ts";
import { registerVolumeCommands } from "./commands/volume.ts";

export function buildProgram(): Command {
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
  registerStoreCommands(program);
  registerVolumeCommands(program);
  registerGcCommand(program);
  registerNbdCommands(program);
  registerServeCommand(program);
  registerUserCommands(program);
  registerTokenCommands(program);
  registerQuotaCommands(program);
  registerFileCommands(program);
  registerImageCommands(program);
  registerFlavorCommands(program);
  registerServerCommands(program);
  return program;
}

/** Runs one command line (without `node` and the script); returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...args], { from: "user" });
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
