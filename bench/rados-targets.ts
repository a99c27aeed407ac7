/**
 * The two sides of bench/rados, on one micro cluster (scripts/dev-ceph.sh):
 *
 *   rbd      an RBD image (default features, 4 MiB objects, librbd cache off through the
 *            image's `conf_rbd_cache` metadata), driven by fio's `rbd` ioengine: librbd in
 *            fio's own process
 *   okeanos  a volume (4 MiB blocks) in a rados:POOL/NAMESPACE store, served by
 *            `okeanos nbd serve --socket`, driven by fio's `nbd` ioengine (libnbd)
 *   qemu-nbd (librbd)  a second RBD image like the first, served by `qemu-nbd` through QEMU's
 *            rbd driver (librbd, cache off) and driven by fio's `nbd` ioengine: the same NBD hop
 *            as okeanos, done by the usual C server. It prices the hop itself: what any NBD
 *            server in front of Ceph pays that librbd inside fio does not. fio rows only.
 *   nbdkit (librados)  nbdkit with bench/rados-nbdkit-plugin.c: 4 MiB RADOS objects read and
 *            written with plain librados, nothing else; the smallest NBD server on Ceph we
 *            could write, with none of okeanos' own work in it. fio rows only.
 *
 * All are prefilled the same way: the working set written once, 1 MiB at a time at QD 8
 * with fio's random buffers. The jobs, the fio JSON and the snapshot + clone commands are
 * here too; bench/rados.bench.ts runs the rounds and prints the ratios.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Engine } from "../engine/engine.ts";
import { RadosObjectStore } from "../engine/blocker/rados/rados.ts";
import { okeanosCliPath } from "./nbd/okeanos-target.ts";
import { nbdUnixUri, type FioResult, type Workload } from "./nbd/fio.ts";
import { run, ServerProcess } from "./nbd/processes.ts";

export const MiB = 1024 * 1024;

/**
 * issue 4's rows: 4 KiB random read and write at QD 1 and 32, 4 MiB sequential read and
 * write (QD 8: 32 MiB in flight, a third of librados' objecter_inflight_op_bytes).
 */
export const radosWorkloads: readonly Workload[] = [
  { name: "randread-4k-qd1", rw: "randread", blockBytes: 4096, queueDepth: 1 },
  { name: "randread-4k-qd32", rw: "randread", blockBytes: 4096, queueDepth: 32 },
  { name: "seqread-4m-qd8", rw: "read", blockBytes: 4 * MiB, queueDepth: 8 },
  { name: "randwrite-4k-qd1", rw: "randwrite", blockBytes: 4096, queueDepth: 1 },
  { name: "randwrite-4k-qd32", rw: "randwrite", blockBytes: 4096, queueDepth: 32 },
  { name: "seqwrite-4m-qd8", rw: "write", blockBytes: 4 * MiB, queueDepth: 8 },
];

/**
 * A Ceph cluster to run on. Every client finds it through $CEPH_CONF (fio's rbd engine reads
 * no other setting), which bench/rados.bench.ts sets for the duration of the group.
 */
export interface Cluster {
  cephConf: string;
  pool: string;
}

/** A side of the fio rows. */
export interface FioTarget {
  readonly name: string;
  /** fio's engine options for this side. */
  readonly fioEngineArgs: string[];
  setUp(): Promise<void>;
  /** CPU time of this side's NBD server so far (ms), where it has one. */
  serverCpuMs?(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** A side of the fio rows and of the snapshot + clone rows. */
export interface RadosTarget extends FioTarget {
  /** Snapshot, then clone, `source` (the benchmarked image) as round `n`: seconds per command. */
  snapshotAndClone(n: number): Promise<Array<{ step: string; seconds: number }>>;
  /** One command that connects and does nothing, for the CLI's start-up cost (seconds). */
  baseline(): Promise<number>;
}

export interface JobOptions {
  workingSetBytes: number;
  runtimeSeconds: number;
  outputPath: string;
}

async function timed(command: string, args: readonly string[]): Promise<number> {
  const startedMs = performance.now();
  await run(command, args);
  return (performance.now() - startedMs) / 1000;
}

export class RbdTarget implements RadosTarget {
  readonly name = "librbd (fio rbd)";
  readonly #cluster: Cluster;
  readonly #image: string;
  readonly #sizeBytes: number;
  readonly #workingSetBytes: number;
  readonly #dir: string;

  constructor(cluster: Cluster, dir: string, sizeBytes: number, workingSetBytes: number) {
    this.#cluster = cluster;
    this.#image = `bench-rbd-${process.pid}`;
    this.#sizeBytes = sizeBytes;
    this.#workingSetBytes = workingSetBytes;
    this.#dir = dir;
  }

  get fioEngineArgs(): string[] {
    return ["--ioengine=rbd", "--clientname=admin", `--pool=${this.#cluster.pool}`, `--rbdname=${this.#image}`];
  }

  async setUp(): Promise<void> {
    const spec = `${this.#cluster.pool}/${this.#image}`;
    await this.#rbd("create", "--size", `${this.#sizeBytes / MiB}M`, spec);
    // notes/ceph.md §3: the default cache (writearound) makes 4 KiB writes erratic; okeanos
    // has no client cache either. The image's own config override reaches fio's librbd.
    await this.#rbd("image-meta", "set", spec, "conf_rbd_cache", "false");
    await prefill(this.fioEngineArgs, this.#workingSetBytes, join(this.#dir, "rbd-prefill.json"));
  }

  async snapshotAndClone(n: number): Promise<Array<{ step: string; seconds: number }>> {
    const snapshot = `${this.#cluster.pool}/${this.#image}@snap-${n}`;
    const create = await timed("rbd", ["snap", "create", snapshot]);
    const protect = await timed("rbd", ["snap", "protect", snapshot]);
    const clone = await timed("rbd", ["clone", snapshot, `${this.#cluster.pool}/${this.#image}-clone-${n}`]);
    return [
      { step: "snapshot", seconds: create },
      { step: "protect", seconds: protect },
      { step: "clone", seconds: clone },
    ];
  }

  baseline(): Promise<number> {
    return timed("rbd", ["ls", this.#cluster.pool]);
  }

  /**
   * Nothing runs between jobs (librbd lives in fio). The image, its snapshots and clones stay
   * in the pool: a cluster the benchmark started is purged at the end.
   */
  async stop(): Promise<void> {}

  async #rbd(...args: string[]): Promise<void> {
    await run("rbd", args);
  }
}

export class OkeanosRadosTarget implements RadosTarget {
  readonly name = "okeanos (fio nbd)";
  readonly #cluster: Cluster;
  readonly #store: string;
  readonly #sizeBytes: number;
  readonly #workingSetBytes: number;
  readonly #dir: string;
  readonly #socketPath: string;
  #server: ServerProcess | undefined;

  constructor(cluster: Cluster, dir: string, sizeBytes: number, workingSetBytes: number) {
    this.#cluster = cluster;
    this.#store = `rados:${cluster.pool}/bench-${process.pid}`;
    this.#sizeBytes = sizeBytes;
    this.#workingSetBytes = workingSetBytes;
    this.#dir = dir;
    this.#socketPath = join(dir, "okeanos-nbd.sock");
  }

  get fioEngineArgs(): string[] {
    return ["--ioengine=nbd", `--uri=${nbdUnixUri("bench", this.#socketPath)}`];
  }

  get serverPid(): number | undefined {
    return this.#server?.pid;
  }

  async setUp(): Promise<void> {
    await this.#cli("store", "init");
    await this.#cli("volume", "create", "bench", "--size", String(this.#sizeBytes));
    await this.#startServer();
    await prefill(this.fioEngineArgs, this.#workingSetBytes, join(this.#dir, "okeanos-prefill.json"));
  }

  async #startServer(): Promise<void> {
    const args = [okeanosCliPath, ...this.#globalArgs(), "nbd", "serve", "--socket", this.#socketPath, "bench"];
    this.#server = new ServerProcess(process.execPath, args, join(this.#dir, "okeanos-server.log"));
    await this.#server.waitUntilServing(this.#socketPath);
  }

  /** The volume is closed between jobs (no NBD client): the CLI snapshots it itself, as an operator would. */
  async snapshotAndClone(n: number): Promise<Array<{ step: string; seconds: number }>> {
    const snapshot = await timed(process.execPath, [okeanosCliPath, ...this.#globalArgs(), "volume", "snapshot", "bench", `snap-${n}`]);
    const clone = await timed(process.execPath, [okeanosCliPath, ...this.#globalArgs(), "volume", "clone", `snap-${n}`, `clone-${n}`]);
    return [
      { step: "snapshot", seconds: snapshot },
      { step: "clone", seconds: clone },
    ];
  }

  baseline(): Promise<number> {
    return timed(process.execPath, [okeanosCliPath, ...this.#globalArgs(), "volume", "list"]);
  }

  /** The engine's own work for snapshot + clone: the Engine API in this process on a connection already open (seconds). */
  async snapshotAndCloneInProcess(n: number): Promise<number> {
    const slash = this.#store.indexOf("/");
    const objects = await RadosObjectStore.open({ pool: this.#cluster.pool, namespace: this.#store.slice(slash + 1), cephConf: this.#cluster.cephConf });
    const engine = await Engine.open(objects);
    try {
      const startedMs = performance.now();
      await engine.snapshot("bench", `in-process-snap-${n}`);
      await engine.clone(`in-process-snap-${n}`, `in-process-clone-${n}`);
      return (performance.now() - startedMs) / 1000;
    } finally {
      await engine.close();
    }
  }

  async serverCpuMs(): Promise<number | undefined> {
    return this.#server?.cpuMs();
  }

  async peakRssBytes(): Promise<number> {
    return (await this.#server?.sampleRss()) ?? 0;
  }

  async logTail(): Promise<string | undefined> {
    return this.#server?.logTail();
  }

  async stop(): Promise<void> {
    await this.#server?.stop();
  }

  #globalArgs(): string[] {
    return ["--store", this.#store, "--ceph-conf", this.#cluster.cephConf];
  }

  async #cli(...args: string[]): Promise<void> {
    await run(process.execPath, [okeanosCliPath, ...this.#globalArgs(), ...args]);
  }
}

/**
 * A peer NBD server on a unix socket in the run's directory, driven by fio's `nbd` engine:
 * what the qemu-nbd and nbdkit sides share (process, socket, prefill, CPU, stop).
 */
class PeerNbdServer {
  readonly socketPath: string;
  readonly #dir: string;
  readonly #label: string;
  #server: ServerProcess | undefined;

  constructor(dir: string, label: string) {
    this.#dir = dir;
    this.#label = label;
    this.socketPath = join(dir, `${label}.sock`);
  }

  get fioEngineArgs(): string[] {
    return ["--ioengine=nbd", `--uri=${nbdUnixUri("bench", this.socketPath)}`];
  }

  /** Starts `command` (which must serve export "bench" on socketPath), then prefills the working set through it. */
  async start(command: string, args: readonly string[], workingSetBytes: number): Promise<void> {
    this.#server = new ServerProcess(command, args, join(this.#dir, `${this.#label}.log`));
    await this.#server.waitUntilServing(this.socketPath);
    await prefill(this.fioEngineArgs, workingSetBytes, join(this.#dir, `${this.#label}-prefill.json`));
  }

  async cpuMs(): Promise<number | undefined> {
    return this.#server?.cpuMs();
  }

  async stop(): Promise<void> {
    await this.#server?.stop();
  }
}

/**
 * `qemu-nbd` serving an RBD image through QEMU's rbd block driver (Debian: qemu-block-extra).
 * `--cache=none` is what turns librbd's cache off there (QEMU sets rbd_cache from the cache
 * mode); the image's `conf_rbd_cache=false` says the same, as on the librbd side.
 */
export class QemuNbdRbdTarget implements FioTarget {
  readonly name = "qemu-nbd (librbd)";
  readonly #cluster: Cluster;
  readonly #image: string;
  readonly #sizeBytes: number;
  readonly #workingSetBytes: number;
  readonly #server: PeerNbdServer;

  constructor(cluster: Cluster, dir: string, sizeBytes: number, workingSetBytes: number) {
    this.#cluster = cluster;
    this.#image = `bench-qemu-nbd-${process.pid}`;
    this.#sizeBytes = sizeBytes;
    this.#workingSetBytes = workingSetBytes;
    this.#server = new PeerNbdServer(dir, "qemu-nbd");
  }

  get fioEngineArgs(): string[] {
    return this.#server.fioEngineArgs;
  }

  /** Why this side cannot run here (QEMU without its rbd driver), or undefined; needs the image, so after `createImage`. */
  async missing(): Promise<string | undefined> {
    const opened = await run("qemu-img", ["info", "--image-opts", this.#imageOptions()]).catch((error: unknown) => error);
    return opened instanceof Error ? `qemu-img cannot open an rbd image (Debian: qemu-block-extra): ${opened.message.split("\n")[0]}` : undefined;
  }

  async createImage(): Promise<void> {
    const spec = `${this.#cluster.pool}/${this.#image}`;
    await run("rbd", ["create", "--size", `${this.#sizeBytes / MiB}M`, spec]);
    await run("rbd", ["image-meta", "set", spec, "conf_rbd_cache", "false"]);
  }

  async setUp(): Promise<void> {
    // -t: keep serving between fio's connections; -x: the export name the URI asks for.
    const args = ["-t", "-x", "bench", "--cache=none", "-k", this.#server.socketPath, "--image-opts", this.#imageOptions()];
    await this.#server.start("qemu-nbd", args, this.#workingSetBytes);
  }

  serverCpuMs(): Promise<number | undefined> {
    return this.#server.cpuMs();
  }

  stop(): Promise<void> {
    return this.#server.stop();
  }

  #imageOptions(): string {
    // QEMU's option syntax doubles a comma inside a value; paths here have none.
    return `driver=rbd,pool=${this.#cluster.pool},image=${this.#image},conf=${this.#cluster.cephConf},user=admin`;
  }
}

const nbdkitPluginSource = join(import.meta.dirname, "rados-nbdkit-plugin.c");

/** nbdkit serving bench/rados-nbdkit-plugin.c, which gcc builds in the run's directory. */
export class NbdkitRadosTarget implements FioTarget {
  readonly name = "nbdkit (librados)";
  readonly #cluster: Cluster;
  readonly #prefix: string;
  readonly #sizeBytes: number;
  readonly #workingSetBytes: number;
  readonly #pluginPath: string;
  readonly #server: PeerNbdServer;

  constructor(cluster: Cluster, dir: string, sizeBytes: number, workingSetBytes: number) {
    this.#cluster = cluster;
    this.#prefix = `bench-nbdkit-${process.pid}`;
    this.#sizeBytes = sizeBytes;
    this.#workingSetBytes = workingSetBytes;
    this.#pluginPath = join(dir, "nbdkit-rados-plugin.so");
    this.#server = new PeerNbdServer(dir, "nbdkit");
  }

  get fioEngineArgs(): string[] {
    return this.#server.fioEngineArgs;
  }

  /** Builds the plugin; why this side cannot run here, or undefined. */
  async build(): Promise<string | undefined> {
    if (!existsSync("/usr/include/nbdkit-plugin.h")) return "nbdkit's plugin headers are missing (Debian: nbdkit nbdkit-plugin-dev)";
    const built = await run("gcc", ["-O2", "-fPIC", "-shared", "-o", this.#pluginPath, nbdkitPluginSource, "-lrados"]).catch((error: unknown) => error);
    return built instanceof Error ? `gcc could not build ${nbdkitPluginSource} (Debian: gcc librados-dev): ${built.message.split("\n")[0]}` : undefined;
  }

  async setUp(): Promise<void> {
    // --threads: each of nbdkit's threads holds one request through its synchronous librados
    // call, and the default 16 would keep the QD32 rows at 16 in flight (RADOS run 10).
    const args = ["-f", "--threads", "64", "-U", this.#server.socketPath, "-e", "bench", this.#pluginPath];
    const settings = [`conf=${this.#cluster.cephConf}`, `pool=${this.#cluster.pool}`, `prefix=${this.#prefix}`, `size=${this.#sizeBytes}`];
    await this.#server.start("nbdkit", [...args, ...settings], this.#workingSetBytes);
  }

  serverCpuMs(): Promise<number | undefined> {
    return this.#server.cpuMs();
  }

  stop(): Promise<void> {
    return this.#server.stop();
  }
}

/** One time-based fio job (same offsets on both sides: fio's seeded random, randrepeat=1). */
export async function runJob(engineArgs: readonly string[], workload: Workload, options: JobOptions): Promise<FioResult> {
  await run(
    "fio",
    [
      `--name=${workload.name}`,
      ...engineArgs,
      `--rw=${workload.rw}`,
      `--bs=${workload.blockBytes}`,
      `--iodepth=${workload.queueDepth}`,
      `--size=${options.workingSetBytes}`,
      "--time_based=1",
      `--runtime=${options.runtimeSeconds}`,
      "--percentile_list=50:99",
      "--output-format=json",
      `--output=${options.outputPath}`,
    ],
  );
  const direction = workload.rw === "randwrite" || workload.rw === "write" ? "write" : "read";
  return parseResult(await readFile(options.outputPath, "utf8"), direction);
}

/** The working set written once, 1 MiB at a time at QD 8, then flushed (fio's random buffers). */
async function prefill(engineArgs: readonly string[], workingSetBytes: number, outputPath: string): Promise<void> {
  await run(
    "fio",
    ["--name=prefill", ...engineArgs, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${workingSetBytes}`, "--end_fsync=1", "--output-format=json", `--output=${outputPath}`],
  );
}

interface FioJson {
  jobs: Array<{ error: number; read: FioDirection; write: FioDirection }>;
}

interface FioDirection {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { percentile?: Record<string, number> };
}

function parseResult(text: string, direction: "read" | "write"): FioResult {
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
