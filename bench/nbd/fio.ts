/**
 * The fio side of the NBD benchmark: the workloads, one fio run per job over an NBD URI with
 * fio's `nbd` ioengine (libnbd; `uri=nbd+unix:///NAME?socket=PATH`), and the numbers read
 * back from `--output-format=json`.
 *
 * Every job is confined to the working set (`size=`), the prefilled start of the export, and
 * uses fio's default seeded offsets (randrepeat=1), so every server sees the same requests.
 */
import { readFile } from "node:fs/promises";
import { run } from "./processes.ts";

export interface Workload {
  /** Short id, used on the command line (OKEANOS_BENCH_NBD_PROFILE) and in the tables. */
  readonly name: string;
  readonly rw: "randread" | "randwrite" | "read" | "write";
  readonly blockBytes: number;
  readonly queueDepth: number;
}

/**
 * The rows of issue 3's "bench/nbd" and of ../shared/notes/nbd.md: 4 KiB random at QD 1 and
 * 32, 1 MiB sequential at QD 8. Reads come before writes in a round, so a round's reads see
 * the data the prefill (or the previous round) left.
 */
export const workloads: readonly Workload[] = [
  { name: "randread-4k-qd1", rw: "randread", blockBytes: 4096, queueDepth: 1 },
  { name: "randread-4k-qd32", rw: "randread", blockBytes: 4096, queueDepth: 32 },
  { name: "seqread-1m-qd8", rw: "read", blockBytes: 1024 * 1024, queueDepth: 8 },
  { name: "randwrite-4k-qd1", rw: "randwrite", blockBytes: 4096, queueDepth: 1 },
  { name: "randwrite-4k-qd32", rw: "randwrite", blockBytes: 4096, queueDepth: 32 },
  { name: "seqwrite-1m-qd8", rw: "write", blockBytes: 1024 * 1024, queueDepth: 8 },
];

export function isWrite(workload: Workload): boolean {
  return workload.rw === "randwrite" || workload.rw === "write";
}

export interface FioResult {
  iops: number;
  /** 10^6 bytes per second. */
  megabytesPerSecond: number;
  /** Completion latency percentiles, µs. */
  clatP50Us: number;
  clatP99Us: number;
  ios: number;
  /** Server CPU time (all threads, user + system) per request, µs; filled in by the caller. */
  serverCpuUsPerOp: number;
}

export interface JobOptions {
  workingSetBytes: number;
  runtimeSeconds: number;
  /** Where fio writes its JSON. */
  outputPath: string;
}

export function nbdUnixUri(exportName: string, socketPath: string): string {
  return `nbd+unix:///${encodeURIComponent(exportName)}?socket=${socketPath}`;
}

/** One time-based fio job against `uri`. */
export async function runJob(uri: string, workload: Workload, options: JobOptions): Promise<FioResult> {
  const args = [
    `--name=${workload.name}`,
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${workload.rw}`,
    `--bs=${workload.blockBytes}`,
    `--iodepth=${workload.queueDepth}`,
    `--size=${options.workingSetBytes}`,
    "--time_based=1",
    `--runtime=${options.runtimeSeconds}`,
    "--percentile_list=50:99",
    "--output-format=json",
    `--output=${options.outputPath}`,
  ];
  await run("fio", args);
  return parseResult(await readFile(options.outputPath, "utf8"), isWrite(workload) ? "write" : "read");
}

/**
 * Writes the working set once, 1 MiB at a time at QD 8, and flushes (end_fsync is an NBD
 * FLUSH in fio's nbd engine). fio's buffers are random, so no server can store them as zeros.
 */
export async function prefill(uri: string, workingSetBytes: number, outputPath: string): Promise<FioResult> {
  await run("fio", [
    "--name=prefill",
    "--ioengine=nbd",
    `--uri=${uri}`,
    "--rw=write",
    "--bs=1M",
    "--iodepth=8",
    `--size=${workingSetBytes}`,
    "--end_fsync=1",
    "--output-format=json",
    `--output=${outputPath}`,
  ]);
  return parseResult(await readFile(outputPath, "utf8"), "write");
}

interface FioJson {
  jobs: Array<{
    error: number;
    read: FioDirection;
    write: FioDirection;
  }>;
}

interface FioDirection {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { percentile?: Record<string, number> };
}

function parseResult(text: string, direction: "read" | "write"): FioResult {
  // fio's nbd engine prints "fio: connected to NBD server" on stdout; with --output the
  // file holds only the JSON, but be tolerant of a leading line anyway.
  const json = JSON.parse(text.slice(text.indexOf("{"))) as FioJson;
  const job = json.jobs[0];
  if (job === undefined) throw new Error("fio JSON has no jobs");
  if (job.error !== 0) throw new Error(`fio job failed with error ${job.error}`);
  const side = job[direction];
  const percentile = side.clat_ns.percentile ?? {};
  return {
    iops: side.iops,
    megabytesPerSecond: side.bw_bytes / 1e6,
    clatP50Us: (percentile["50.000000"] ?? Number.NaN) / 1000,
    clatP99Us: (percentile["99.000000"] ?? Number.NaN) / 1000,
    ios: side.total_ios,
    serverCpuUsPerOp: Number.NaN,
  };
}
