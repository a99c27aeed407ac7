/**
 * `okeanos gc`: remove objects no named map references, once older than the grace period.
 * Given a metadata database (`--database` or OKEANOS_DATABASE), first delete the object
 * store's orphan file maps — `pithos.*` maps no file version names, left by a crash between
 * writing a file's map and recording its version (gateways/pithos/orphans.ts) — so that the
 * same run frees their blocks. Without one, only the engine is touched: a store used without
 * Pithos+ has no database, and a default path guessed for it could be another store's
 * (whose files would all look orphaned).
 */
import { Option, type Command } from "commander";
import { gcGraceDefaultMs, type GcResult } from "../../engine/mapper/gc.ts";
import type { Engine } from "../../engine/engine.ts";
import { PithosService } from "../../gateways/pithos/service.ts";
import { OrphanSweepRefused, sweepOrphanMaps, type SweepOrphanMapsResult } from "../../gateways/pithos/orphans.ts";
import { durationArgument, examples, report, withEngine, type GlobalOptions } from "../context.ts";
import { fieldTable, table, UsageError, type Report } from "../output.ts";
import { formatBytes, formatDuration } from "../units.ts";
import { withDatabase } from "./database.ts";

interface GcOptions {
  grace: number;
  dryRun?: boolean;
  database?: string;
  force?: boolean;
}

export function registerGcCommand(program: Command): void {
  program
    .command("gc")
    .description("free the objects of deleted volumes and files, overwritten blocks and interrupted operations")
    .addOption(
      new Option("--grace <duration>", "leave unreferenced maps and objects younger than this (they may belong to an operation in progress)")
        .default(gcGraceDefaultMs, formatDuration(gcGraceDefaultMs))
        .argParser(durationArgument),
    )
    .option("--dry-run", "only say what would be freed")
    .addOption(
      new Option("--database <url>", "also delete orphan Pithos+ file maps (no version names them) of this metadata database, first: sqlite:PATH or postgres://…").env(
        "OKEANOS_DATABASE",
      ),
    )
    .option("--force", "sweep file maps even when the database names none of them (is it this store's database?)")
    .addHelpText(
      "after",
      examples("okeanos gc", "okeanos gc --grace 0 --dry-run", "okeanos gc --grace 10m --json", "okeanos gc --database sqlite:./data/okeanos.db"),
    )
    .action((options: GcOptions, command: Command) => report(command, (global) => gc(global, options)));
}

async function gc(global: GlobalOptions, options: GcOptions): Promise<Report> {
  const graceMs = options.grace;
  const dryRun = options.dryRun === true;
  const { database } = options;
  const { files, result } = await withEngine(global, async (engine) => {
    const swept = database === undefined ? undefined : await sweepFiles(engine, database, graceMs, dryRun, options.force === true);
    return { files: swept, result: await engine.gc({ graceMs, dryRun }) };
  });
  return {
    text: [...(files === undefined ? [] : [filesLine(files)]), ...engineLines(result, graceMs, dryRun)].join("\n"),
    json: { ...result, graceMs, ...(files !== undefined && { files }) },
  };
}

async function sweepFiles(engine: Engine, databaseUrl: string, graceMs: number, dryRun: boolean, force: boolean): Promise<SweepOrphanMapsResult> {
  try {
    return await withDatabase(databaseUrl, (db) => sweepOrphanMaps(new PithosService({ engine, db }), { olderThanMs: graceMs, dryRun, force }));
  } catch (error) {
    if (!(error instanceof OrphanSweepRefused)) throw error;
    throw new UsageError(`${error.message} Nothing was deleted; --force deletes all ${error.orphanMaps} of them.`);
  }
}

function filesLine(files: SweepOrphanMapsResult): string {
  const verb = files.dryRun ? "Would delete" : "Deleted";
  const locked = files.lockedMaps > 0 ? `, ${files.lockedMaps} locked (left for the next run)` : "";
  return (
    `${verb} ${files.removedMaps} orphan file map${files.removedMaps === 1 ? "" : "s"} ` +
    `(${files.fileMaps} file maps, ${files.referencedMaps} named by versions, ${files.keptRecentMaps} younger than grace${locked})`
  );
}

function engineLines(result: GcResult, graceMs: number, dryRun: boolean): string[] {
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
    const why = result.contentSweepSkippedReason ?? "a volume is open for writing or being hashed";
    lines.push(`Content blocks were not swept (${why}); run gc again later.`);
  }
  return lines;
}
