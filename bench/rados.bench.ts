/**
 * okeanos on RADOS against librbd, on one micro cluster in one run (issue 4, "bench/rados"):
 *
 *   librbd   fio's `rbd` ioengine on an RBD image (librbd inside fio; cache off)
 *   okeanos  fio's `nbd` ioengine on a volume of a rados: store served by `okeanos nbd serve`
 *   qemu-nbd (librbd)  fio's `nbd` ioengine on an RBD image served by qemu-nbd (QEMU's rbd
 *            driver): the NBD hop without okeanos, to price the hop itself. Left out, with a
 *            message, where QEMU has no rbd driver (Debian: qemu-block-extra). fio rows only.
 *   nbdkit (librados)  fio's `nbd` ioengine on nbdkit with bench/rados-nbdkit-plugin.c: plain
 *            librados objects behind the smallest NBD server we could write, none of
 *            okeanos' work. Left out, with a message, without nbdkit's plugin headers
 *            (Debian: nbdkit-plugin-dev). fio rows only.
 *   rows     4 KiB random read and write at QD 1 and 32, 4 MiB sequential read and write at
 *            QD 8 (bench/rados-targets.ts), time-based over a prefilled working set; then
 *            `rbd snap create` + `rbd snap protect` + `rbd clone` against `okeanos volume
 *            snapshot` + `okeanos volume clone` of the same data, as CLI commands
 *   rounds   every round runs every row on every side, who goes first rotating; ratios are
 *            taken per round (> 1: the first named faster), summarised as median (min–max)
 *
 * The cluster is scripts/dev-ceph.sh (one OSD on file-backed BlueStore), started in the run's temp dir and
 * purged at the end; OKEANOS_BENCH_CEPH_CONF=PATH (pool $OKEANOS_CEPH_POOL, default okeanos)
 * uses a running one instead. OSD CPU per request is read from /proc when we started the OSD.
 *
 * Settings (environment):
 *   OKEANOS_BENCH_RADOS_ROUNDS     rounds of fio jobs (default 3; --quick: 1)
 *   OKEANOS_BENCH_RADOS_SECONDS    seconds per fio job (default 10; --quick: 2)
 *   OKEANOS_BENCH_RADOS_SNAPSHOTS  snapshot + clone rounds (default 5; --quick: 2)
 *   OKEANOS_BENCH_CEPH_CONF        an existing cluster's ceph.conf (default: start one)
 *   OKEANOS_CEPH_STORE             bluestore (default) or memstore, for the cluster started.
 *                                  BlueStore, because memstore's cost per op grows with every
 *                                  small overwrite an object has taken (bench/RESULTS.md, RADOS,
 *                                  session 6): its write rows measure each side's history.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { radosAddonInstructions, radosAddonPath } from "../engine/blocker/rados/native.ts";
import { formatBytes, median, printTable, printTitle, round, withTempDir, type BenchContext, type BenchGroup } from "./common.ts";
import type { FioResult, Workload } from "./nbd/fio.ts";
import { commandExists, killAllNow, run } from "./nbd/processes.ts";
import { formatRatio, headline, markdownTable, Results } from "./nbd/report.ts";
import { MiB, NbdkitRadosTarget, OkeanosRadosTarget, QemuNbdRbdTarget, RbdTarget, radosWorkloads, runJob, type Cluster, type FioTarget, type RadosTarget } from "./rados-targets.ts";

const devCeph = join(import.meta.dirname, "..", "scripts", "dev-ceph.sh");
const ours = "okeanos";
const peer = "librbd";
const hop = "qemu-nbd (librbd)";
const plainServer = "nbdkit (librados)";

interface Settings {
  rounds: number;
  runtimeSeconds: number;
  snapshotRounds: number;
  imageSizeBytes: number;
  workingSetBytes: number;
  existingCephConf: string | undefined;
  pool: string;
}

function settingsFrom(context: BenchContext, env: NodeJS.ProcessEnv): Settings {
  const number = (name: string, fallback: number): number => {
    const text = env[name];
    if (text === undefined || text === "") return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${text}: expected a positive number`);
    return value;
  };
  return {
    rounds: Math.round(number("OKEANOS_BENCH_RADOS_ROUNDS", context.quick ? 1 : 3)),
    runtimeSeconds: number("OKEANOS_BENCH_RADOS_SECONDS", context.quick ? 2 : 10),
    snapshotRounds: Math.round(number("OKEANOS_BENCH_RADOS_SNAPSHOTS", context.quick ? 2 : 5)),
    // As bench/nbd: 512 MiB images, the first 256 MiB written before the jobs. Memstore holds
    // both sides' data in the OSD's memory: about 0.6 GiB here.
    imageSizeBytes: (context.quick ? 128 : 512) * MiB,
    workingSetBytes: (context.quick ? 64 : 256) * MiB,
    existingCephConf: env["OKEANOS_BENCH_CEPH_CONF"] === "" ? undefined : env["OKEANOS_BENCH_CEPH_CONF"],
    pool: env["OKEANOS_CEPH_POOL"] ?? "okeanos",
  };
}

/** Why this group cannot run here, or undefined. */
async function missing(settings: Settings): Promise<string | undefined> {
  if (!existsSync(process.env["OKEANOS_RADOS_ADDON"] ?? radosAddonPath)) return `the rados addon is not built: ${radosAddonInstructions}`;
  if (!(await commandExists("rbd", ["--version"]))) return "rbd not found (Debian: ceph-common)";
  if (settings.existingCephConf === undefined && !(await commandExists("ceph-osd", ["--version"]))) return "ceph-mon/ceph-osd not found (Debian: ceph-mon ceph-osd)";
  for (const [engine, option] of [["rbd", "rbdname"], ["nbd", "uri"]] as const) {
    const help = await run("fio", [`--enghelp=${engine}`]).catch(() => undefined);
    if (help === undefined || !help.stdout.includes(option)) return `fio has no \`${engine}\` ioengine (Debian's fio has both)`;
  }
  return undefined;
}

// ── the cluster ────────────────────────────────────────────────────────────

interface RunningCluster extends Cluster {
  /** The OSD's pid when we started it (for its CPU time), else undefined. */
  osdPid: number | undefined;
  stop(): Promise<void>;
}

async function startCluster(settings: Settings, dir: string): Promise<RunningCluster> {
  if (settings.existingCephConf !== undefined) {
    return { cephConf: settings.existingCephConf, pool: settings.pool, osdPid: undefined, stop: async () => undefined };
  }
  const cephDir = join(dir, "ceph");
  const startedMs = performance.now();
  const store = process.env["OKEANOS_CEPH_STORE"] ?? "bluestore";
  const { stdout } = await run(devCeph, ["start", cephDir], { env: { ...process.env, OKEANOS_CEPH_STORE: store } });
  console.log(`  cluster: scripts/dev-ceph.sh up in ${round((performance.now() - startedMs) / 1000)} s (${cephDir}, ${store})`);
  // Ctrl-C: common.ts removes the temp dirs and exits; the daemons must go first.
  const stopNow = (): void => void spawnSync(devCeph, ["stop", cephDir, "--purge"], { stdio: "ignore" });
  process.prependListener("SIGINT", stopNow);
  process.prependListener("SIGTERM", stopNow);
  const osdPid = Number((await readFile(join(cephDir, "pids", "osd.0.pid"), "utf8")).trim());
  return {
    cephConf: stdout.trim(),
    pool: "okeanos",
    osdPid,
    stop: async () => {
      process.off("SIGINT", stopNow);
      process.off("SIGTERM", stopNow);
      await run(devCeph, ["stop", cephDir, "--purge"]);
    },
  };
}

/** A process's CPU time so far (user + system, ms), from /proc/PID/stat. */
async function processCpuMs(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[14 - 3]) + Number(fields[15 - 3])) * 1000) / 100; // USER_HZ is 100 on Linux
}

// ── the run ────────────────────────────────────────────────────────────────

interface Side<Target extends FioTarget = FioTarget> {
  name: typeof ours | typeof peer | typeof hop | typeof plainServer;
  target: Target;
}

interface CpuSamples {
  /** workload → side → OSD CPU µs per request, per round. */
  osd: Map<string, Map<string, number[]>>;
  /** workload → side → its NBD server's CPU µs per request, per round. */
  server: Map<string, Map<string, number[]>>;
}

async function runGroup(context: BenchContext): Promise<void> {
  const settings = settingsFrom(context, process.env);
  printTitle("RADOS: okeanos (fio nbd → okeanos nbd serve → librados) vs librbd (fio rbd), one micro cluster");
  const why = await missing(settings);
  if (why !== undefined) {
    console.log(`skipped: ${why}`);
    return;
  }
  console.log(`load average at start ${loadavg().map((load) => load.toFixed(2)).join(" ")} (the box is shared: read the numbers with it)`);
  await withTempDir(context.tempParentDir, "rados", async (dir) => {
    const savedCephConf = process.env["CEPH_CONF"];
    process.on("exit", killAllNow);
    let cluster: RunningCluster | undefined;
    let okeanos: OkeanosRadosTarget | undefined;
    let qemuNbd: QemuNbdRbdTarget | undefined;
    let nbdkit: NbdkitRadosTarget | undefined;
    try {
      cluster = await startCluster(settings, dir);
      process.env["CEPH_CONF"] = cluster.cephConf;
      const rbd = new RbdTarget(cluster, dir, settings.imageSizeBytes, settings.workingSetBytes);
      okeanos = new OkeanosRadosTarget(cluster, dir, settings.imageSizeBytes, settings.workingSetBytes);
      const snapshotSides: Array<Side<RadosTarget>> = [
        { name: peer, target: rbd },
        { name: ours, target: okeanos },
      ];
      qemuNbd = new QemuNbdRbdTarget(cluster, dir, settings.imageSizeBytes, settings.workingSetBytes);
      await qemuNbd.createImage();
      const withoutHop = await qemuNbd.missing();
      if (withoutHop !== undefined) console.log(`the ${hop} side is left out: ${withoutHop}`);
      nbdkit = new NbdkitRadosTarget(cluster, dir, settings.imageSizeBytes, settings.workingSetBytes);
      const withoutNbdkit = await nbdkit.build();
      if (withoutNbdkit !== undefined) console.log(`the ${plainServer} side is left out: ${withoutNbdkit}`);
      const sides: Side[] = [
        ...snapshotSides,
        ...(withoutHop === undefined ? [{ name: hop, target: qemuNbd } as const] : []),
        ...(withoutNbdkit === undefined ? [{ name: plainServer, target: nbdkit } as const] : []),
      ];
      console.log(
        `images ${formatBytes(settings.imageSizeBytes)}, working set ${formatBytes(settings.workingSetBytes)} prefilled; ` +
          `${settings.rounds} round(s) × ${radosWorkloads.length} rows × ${sides.length} sides, ${settings.runtimeSeconds} s per job; ${settings.snapshotRounds} snapshot + clone rounds`,
      );
      for (const side of sides) {
        const startedMs = performance.now();
        await side.target.setUp();
        console.log(`  ${side.target.name}: set up and prefilled in ${round((performance.now() - startedMs) / 1000)} s`);
      }
      const cpu: CpuSamples = { osd: new Map(), server: new Map() };
      const results = await runRounds(sides, settings, dir, cluster, okeanos, cpu);
      const snapshots = await runSnapshotRounds(snapshotSides, settings);
      await printResults(results, cpu, snapshots, okeanos, sides.map((side) => side.name));
    } finally {
      await okeanos?.stop().catch(() => undefined);
      await qemuNbd?.stop().catch(() => undefined);
      await nbdkit?.stop().catch(() => undefined);
      killAllNow();
      process.off("exit", killAllNow);
      if (savedCephConf === undefined) delete process.env["CEPH_CONF"];
      else process.env["CEPH_CONF"] = savedCephConf;
      await cluster?.stop();
    }
  });
}

async function runRounds(sides: readonly Side[], settings: Settings, dir: string, cluster: RunningCluster, okeanos: OkeanosRadosTarget, cpu: CpuSamples): Promise<Results> {
  const results = new Results();
  for (let roundIndex = 0; roundIndex < settings.rounds; roundIndex++) {
    console.log(`round ${roundIndex + 1}/${settings.rounds} (load average ${loadavg().map((load) => load.toFixed(2)).join(" ")})`);
    for (const [workloadIndex, workload] of radosWorkloads.entries()) {
      const first = (roundIndex + workloadIndex) % sides.length;
      const order = [...sides.slice(first), ...sides.slice(0, first)];
      const cells: string[] = [];
      for (const side of order) {
        const result = await runOne(side, workload, settings, join(dir, `${side.name}-${workload.name}-${roundIndex + 1}.json`), cluster, okeanos, cpu);
        results.add(workload, side.name, roundIndex, result);
        cells.push(`${side.name} ${headline(workload, result)}`);
      }
      console.log(`  ${workload.name.padEnd(18)} ${cells.join(", ")}`);
    }
  }
  return results;
}

/** One job; a failure is reported and leaves a gap rather than ending the run. */
async function runOne(
  side: Side,
  workload: Workload,
  settings: Settings,
  outputPath: string,
  cluster: RunningCluster,
  okeanos: OkeanosRadosTarget,
  cpu: CpuSamples,
): Promise<FioResult | undefined> {
  try {
    const osdBefore = await processCpuMs(cluster.osdPid);
    const serverBefore = await side.target.serverCpuMs?.();
    const result = await runJob(side.target.fioEngineArgs, workload, { workingSetBytes: settings.workingSetBytes, runtimeSeconds: settings.runtimeSeconds, outputPath });
    const osdAfter = await processCpuMs(cluster.osdPid);
    const serverAfter = await side.target.serverCpuMs?.();
    if (osdBefore !== undefined && osdAfter !== undefined && result.ios > 0) push(cpu.osd, workload.name, side.name, ((osdAfter - osdBefore) * 1000) / result.ios);
    if (serverBefore !== undefined && serverAfter !== undefined && result.ios > 0) {
      result.serverCpuUsPerOp = ((serverAfter - serverBefore) * 1000) / result.ios;
      push(cpu.server, workload.name, side.name, result.serverCpuUsPerOp);
    }
    if (side.name === ours) await okeanos.peakRssBytes();
    return result;
  } catch (error) {
    console.log(`  ${side.name} ${workload.name} FAILED: ${String(error)}`);
    if (side.name === ours) console.log(`  server log:\n${await okeanos.logTail()}`);
    return undefined;
  }
}

function push(map: Map<string, Map<string, number[]>>, workload: string, side: string, value: number): void {
  let bySide = map.get(workload);
  if (bySide === undefined) map.set(workload, (bySide = new Map()));
  bySide.set(side, [...(bySide.get(side) ?? []), value]);
}

/** step → side → seconds per round ("total": the sum of a side's steps in that round). */
type SnapshotTimes = Map<string, Map<string, number[]>>;

async function runSnapshotRounds(sides: ReadonlyArray<Side<RadosTarget>>, settings: Settings): Promise<SnapshotTimes> {
  const times: SnapshotTimes = new Map();
  console.log(`snapshot + clone: ${settings.snapshotRounds} rounds (load average ${loadavg().map((load) => load.toFixed(2)).join(" ")})`);
  for (let n = 1; n <= settings.snapshotRounds; n++) {
    const order = n % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const steps = await side.target.snapshotAndClone(n);
      const total = steps.reduce((sum, step) => sum + step.seconds, 0);
      const startUp = await side.target.baseline();
      for (const { step, seconds } of steps) push(times, step, side.name, seconds);
      push(times, "total", side.name, total);
      push(times, startUpRow, side.name, startUp);
      // The work itself: librbd's is the CLI's total less one start-up per command; the
      // engine's is timed in this process (a Node CLI's start-up dwarfs it).
      const work = side.target instanceof OkeanosRadosTarget ? await side.target.snapshotAndCloneInProcess(n) : total - steps.length * startUp;
      push(times, workRow, side.name, work);
    }
  }
  return times;
}

const startUpRow = "CLI start-up (rbd ls / okeanos volume list)";
const workRow = "work only (librbd: total less start-ups; okeanos: Engine API in process)";

// ── tables ─────────────────────────────────────────────────────────────────

async function printResults(results: Results, cpu: CpuSamples, snapshots: SnapshotTimes, okeanos: OkeanosRadosTarget, sideNames: readonly string[]): Promise<void> {
  const medianOf = (values: number[] | undefined): number => (values === undefined || values.length === 0 ? Number.NaN : median(values));
  // The other NBD servers: each against librbd, and okeanos against each.
  const otherServers = sideNames.filter((name) => name !== peer && name !== ours);
  const io = radosWorkloads.map((workload) => {
    const medians = sideNames.map((name) => results.medians(workload, name));
    const perSide = (pick: (name: string, index: number) => number): string => sideNames.map((name, index) => round(pick(name, index))).join(" / ");
    return {
      row: workload.name,
      ...Object.fromEntries(sideNames.map((name, index) => [name, headline(workload, medians[index])])),
      [`${ours} ÷ ${peer}`]: formatRatio(results.ratio(workload, ours, peer)),
      ...Object.fromEntries(otherServers.map((name) => [`${name} ÷ ${peer}`, formatRatio(results.ratio(workload, name, peer))])),
      ...Object.fromEntries(otherServers.map((name) => [`${ours} ÷ ${name}`, formatRatio(results.ratio(workload, ours, name))])),
      [`p50 µs ${sideNames.join(" / ")}`]: perSide((_, index) => medians[index]?.clatP50Us ?? Number.NaN),
      [`OSD CPU µs/op ${sideNames.join(" / ")}`]: perSide((name) => medianOf(cpu.osd.get(workload.name)?.get(name))),
      [`NBD server CPU µs/op ${sideNames.slice(1).join(" / ")}`]: sideNames
        .slice(1)
        .map((name) => round(medianOf(cpu.server.get(workload.name)?.get(name))))
        .join(" / "),
    };
  });
  printTitle("fio: medians over rounds; ratios per round, median (min–max); > 1: the first named faster");
  printTable(io);
  const snapshotRows = [...snapshots].map(([step, bySide]) => {
    const theirs = medianOf(bySide.get(peer));
    const mine = medianOf(bySide.get(ours));
    const ratios = (bySide.get(peer) ?? []).flatMap((seconds, index) => {
      const own = bySide.get(ours)?.[index];
      return own === undefined || own === 0 ? [] : [seconds / own];
    });
    const ratio = ratios.length === 0 ? undefined : { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios), rounds: ratios.length };
    return {
      step,
      [`${peer} s`]: Number.isNaN(theirs) ? "—" : round(theirs),
      [`${ours} s`]: Number.isNaN(mine) ? "—" : round(mine),
      [`${peer} ÷ ${ours} (time)`]: step === "protect" || ratio === undefined ? "—" : formatRatio(ratio),
    };
  });
  printTitle("snapshot + clone, CLI wall time (process start and connect included): medians; ratio > 1: okeanos faster");
  printTable(snapshotRows);
  console.log(`okeanos nbd serve peak RSS ${round((await okeanos.peakRssBytes()) / MiB)} MiB`);
  console.log(`\nmarkdown (for RESULTS.md):\n\n${markdownTable(io)}\n\n${markdownTable(snapshotRows)}\n`);
}

export const radosGroup: BenchGroup = {
  name: "rados",
  description: "okeanos on RADOS (fio nbd) vs librbd (fio rbd), and snapshot + clone, on one dev-ceph cluster",
  run: runGroup,
};
