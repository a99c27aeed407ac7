/**
 * Benchmark entry point: `npm run bench -- [group…] [--quick]`.
 *
 *   group     run only groups whose name contains this word (map-lookup, hash, volume-io,
 *             snapshot-clone, nbd, pithos, rados); several may be given; default: all
 *   --quick   short smoke run (small volumes, short timings): checks that everything runs,
 *             its numbers mean little
 *
 * Temporary stores go under $OKEANOS_BENCH_DIR (default: the OS temp dir) and are removed.
 */
import { cpus, loadavg, totalmem } from "node:os";
import { benchDirVariable, defaultTempParentDir, fileSystemName, round, type BenchContext, type BenchGroup } from "./common.ts";
import { mapLookupGroup } from "./map-lookup.bench.ts";
import { hashGroup } from "./hash.bench.ts";
import { volumeIoGroup } from "./volume-io.bench.ts";
import { snapshotCloneGroup } from "./snapshot-clone.bench.ts";
import { nbdGroup } from "./nbd.bench.ts";
import { pithosGroup } from "./pithos.bench.ts";
import { radosGroup } from "./rados.bench.ts";

const groups: readonly BenchGroup[] = [mapLookupGroup, hashGroup, volumeIoGroup, snapshotCloneGroup, nbdGroup, pithosGroup, radosGroup];

function usage(): string {
  return [
    "usage: node bench/run.ts [group…] [--quick]",
    "groups:",
    ...groups.map((group) => `  ${group.name.padEnd(16)}${group.description}`),
    `temporary stores go under $${benchDirVariable} (default: the OS temp dir)`,
  ].join("\n");
}

function loadAverage(): string {
  return loadavg()
    .map((load) => load.toFixed(2))
    .join(" ");
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage());
    return 0;
  }
  const unknownFlags = argv.filter((arg) => arg.startsWith("-") && arg !== "--quick");
  if (unknownFlags.length > 0) {
    console.error(`unknown option ${unknownFlags.join(" ")}\n${usage()}`);
    return 2;
  }
  const filters = argv.filter((arg) => !arg.startsWith("-"));
  const selected = filters.length === 0 ? groups : groups.filter((group) => filters.some((filter) => group.name.includes(filter)));
  if (selected.length === 0) {
    console.error(`no benchmark group matches ${filters.join(" ")}\n${usage()}`);
    return 2;
  }
  const context: BenchContext = { quick: argv.includes("--quick"), tempParentDir: defaultTempParentDir() };
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  console.log(`okeanos benchmarks${context.quick ? " (--quick: smoke run, numbers not meaningful)" : ""}`);
  console.log(`node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} × ${cpu}, ${round(totalmem() / 2 ** 30)} GiB RAM`);
  console.log(`temp dir ${context.tempParentDir} (${await fileSystemName(context.tempParentDir)}), load average at start ${loadAverage()}`);
  const startedMs = performance.now();
  for (const group of selected) await group.run(context);
  console.log(`\ndone in ${round((performance.now() - startedMs) / 1000)} s, load average at end ${loadAverage()}`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
