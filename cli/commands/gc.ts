/**
 * `okeanos gc`: remove objects no named map references, once older than the grace period.
 */
import { Option, type Command } from "commander";
import { gcGraceDefaultMs } from "../../engine/mapper/gc.ts";
import { durationArgument, examples, report, withEngine, type GlobalOptions } from "../context.ts";
import { fieldTable, table, type Report } from "../output.ts";
import { formatBytes, formatDuration } from "../units.ts";

export function registerGcCommand(program: Command): void {
  program
    .command("gc")
    .description("free the objects of deleted volumes, overwritten blocks and interrupted operations")
    .addOption(
      new Option("--grace <duration>", "leave unreferenced objects younger than this (they may belong to an operation in progress)")
        .default(gcGraceDefaultMs, formatDuration(gcGraceDefaultMs))
        .argParser(durationArgument),
    )
    .option("--dry-run", "only say what would be freed")
    .addHelpText("after", examples("okeanos gc", "okeanos gc --grace 0 --dry-run", "okeanos gc --grace 10m --json"))
    .action((options: { grace: number; dryRun?: boolean }, command: Command) =>
      report(command, (global) => gc(global, options.grace, options.dryRun === true)),
    );
}

async function gc(global: GlobalOptions, graceMs: number, dryRun: boolean): Promise<Report> {
  const result = await withEngine(global, (engine) => engine.gc({ graceMs, dryRun }));
  const verb = dryRun ? "Would free" : "Freed";
  const lines = [
    `${verb} ${result.removedObjects} object${result.removedObjects === 1 ? "" : "s"}, ${formatBytes(result.removedBytes)}` +
      `${dryRun ? " (dry run)" : ""}`,
  ];
  const kinds = Object.entries(result.removedByKind).sort(([a], [b]) => (a < b ? -1 : 1));
  if (kinds.length > 0) lines.push(table(["KIND", "OBJECTS"], kinds.map(([kind, count]) => [kind, count])));
  lines.push(
    fieldTable([
      ["live maps", result.liveMaps],
      ["objects examined", result.examinedObjects],
      ["kept (younger than grace)", `${result.keptRecentObjects} (grace ${formatDuration(graceMs)})`],
    ]),
  );
  if (result.contentSweepSkipped) {
    lines.push("Content blocks were not swept: a volume is open for writing or being hashed; run gc again later.");
  }
  return { text: lines.join("\n"), json: { ...result, graceMs } };
}
