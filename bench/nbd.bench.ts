/**
 * okeanos over NBD against qemu-nbd and nbdkit, measured by fio's `nbd` ioengine over unix
 * sockets (issue 3, "bench/nbd"; reference figures and command lines in
 * ../shared/notes/nbd.md).
 *
 *   targets    okeanos, okeanos-cow (snapshot before every job), qemu-nbd raw (writeback),
 *              qemu-nbd qcow2 (fresh overlay on a prefilled raw base before every job),
 *              nbdkit file; each with its own image or store (bench/nbd/targets.ts)
 *   workloads  4 KiB random read and write at QD 1 and 32, 1 MiB sequential read and write
 *              at QD 8, time-based, over the prefilled working set (bench/nbd/fio.ts)
 *   rounds     every round runs every workload on every target, the targets in a rotating
 *              order, so drift in the machine's load hits all of them alike; the tables
 *              show medians over rounds and okeanos/peer ratios taken round by round
 *
 * Settings (environment, since `npm run bench` takes only group names and --quick):
 *   OKEANOS_BENCH_NBD_ROUNDS     rounds (default 3; --quick: 1)
 *   OKEANOS_BENCH_NBD_SECONDS    seconds per job (default 10; --quick: 2)
 *   OKEANOS_BENCH_NBD_TARGETS    comma-separated target names (or parts) to run; default all;
 *                                a part with a leading "-" excludes (okeanos,nbdkit,raw,-cow)
 *   OKEANOS_BENCH_NBD_BASELINE   another checkout of okeanos (e.g. a `git worktree` of the
 *                                last commit, with node_modules): adds the target
 *                                "okeanos-base" serving with its code, and the ratio
 *                                okeanos ÷ okeanos-base, for an A/B of a change in one run
 *   OKEANOS_BENCH_NBD_WORKLOADS  comma-separated workload names (or parts); default all
 *   OKEANOS_BENCH_NBD_PROFILE    "auto" (profile okeanos on every row where it is slower
 *                                than a peer) or TARGET:WORKLOAD,…; profiles are kept in
 *                                OKEANOS_BENCH_NBD_PROFILE_DIR (default $TMPDIR/okeanos-nbd-profiles)
 *   OKEANOS_BENCH_NBD_JSON       write every round's numbers to this file
 */
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MiB, assertFreeSpace, fileSystemName, formatBytes, printTable, printTitle, round, withTempDir, type BenchContext, type BenchGroup } from "./common.ts";
import { isWrite, runJob, workloads, type FioResult, type Workload } from "./nbd/fio.ts";
import { summariseCpuProfile } from "./nbd/cpu-profile.ts";
import { OkeanosTarget, okeanosServeMissing } from "./nbd/okeanos-target.ts";
import { commandExists, killAllNow, run } from "./nbd/processes.ts";
import { comparisons, formatRatio, headline, markdownTable, Results } from "./nbd/report.ts";
import { NbdkitFileTarget, QemuQcow2Target, QemuRawTarget, type NbdTarget, type TargetLayout } from "./nbd/targets.ts";

interface Settings {
  rounds: number;
  runtimeSeconds: number;
  exportSizeBytes: number;
  workingSetBytes: number;
  targetFilter: string[];
  workloadFilter: string[];
  profile: string;
  profileDir: string;
  jsonPath: string | undefined;
  baselineDir: string | undefined;
}

function settingsFrom(context: BenchContext, env: NodeJS.ProcessEnv): Settings {
  const number = (name: string, fallback: number): number => {
    const text = env[name];
    if (text === undefined || text === "") return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${text}: expected a positive number`);
    return value;
  };
  const list = (name: string): string[] => (env[name] ?? "").split(",").map((item) => item.trim()).filter((item) => item !== "");
  return {
    rounds: Math.round(number("OKEANOS_BENCH_NBD_ROUNDS", context.quick ? 1 : 3)),
    runtimeSeconds: number("OKEANOS_BENCH_NBD_SECONDS", context.quick ? 2 : 10),
    // nbd.md's setup: 512 MiB exports, the first 256 MiB written before the jobs.
    exportSizeBytes: (context.quick ? 128 : 512) * MiB,
    workingSetBytes: (context.quick ? 64 : 256) * MiB,
    targetFilter: list("OKEANOS_BENCH_NBD_TARGETS"),
    workloadFilter: list("OKEANOS_BENCH_NBD_WORKLOADS"),
    profile: env["OKEANOS_BENCH_NBD_PROFILE"] ?? "",
    profileDir: resolve(env["OKEANOS_BENCH_NBD_PROFILE_DIR"] ?? join(tmpdir(), "okeanos-nbd-profiles")),
    jsonPath: env["OKEANOS_BENCH_NBD_JSON"],
    baselineDir: env["OKEANOS_BENCH_NBD_BASELINE"] === undefined || env["OKEANOS_BENCH_NBD_BASELINE"] === "" ? undefined : resolve(env["OKEANOS_BENCH_NBD_BASELINE"]),
  };
}

/** Empty: everything; else a name containing one of the parts and none of the "-" parts. */
const matches = (filter: readonly string[], name: string): boolean => {
  const excluded = filter.filter((part) => part.startsWith("-")).map((part) => part.slice(1));
  const included = filter.filter((part) => !part.startsWith("-"));
  return (included.length === 0 || included.some((part) => name.includes(part))) && !excluded.some((part) => name.includes(part));
};

// ── which targets can run here ─────────────────────────────────────────────

type TargetFactory = (layout: TargetLayout) => NbdTarget;

interface Candidate {
  name: string;
  /** Why it cannot run here, or undefined. */
  missing: Promise<string | undefined>;
  create: TargetFactory;
}

function candidates(baselineDir: string | undefined): Candidate[] {
  const okeanosMissing = okeanosServeMissing();
  const baselineCliPath = baselineDir === undefined ? undefined : join(baselineDir, "cli", "okeanos.ts");
  const baseline: Candidate[] =
    baselineCliPath === undefined
      ? []
      : [
          {
            name: "okeanos-base",
            missing: okeanosServeMissing(baselineCliPath),
            create: (layout) => new OkeanosTarget(layout, { copyOnWrite: false, baselineCliPath }),
          },
        ];
  const qemuMissing = Promise.all([commandExists("qemu-nbd"), commandExists("qemu-img")]).then(([nbd, img]) =>
    nbd && img ? undefined : "qemu-nbd or qemu-img not found (Debian: qemu-utils)",
  );
  const nbdkitMissing = commandExists("nbdkit").then((found) => (found ? undefined : "nbdkit not found (Debian: nbdkit)"));
  return [
    { name: "okeanos", missing: okeanosMissing, create: (layout) => new OkeanosTarget(layout, { copyOnWrite: false }) },
    { name: "okeanos-cow", missing: okeanosMissing, create: (layout) => new OkeanosTarget(layout, { copyOnWrite: true }) },
    { name: "qemu-nbd raw", missing: qemuMissing, create: (layout) => new QemuRawTarget(layout) },
    { name: "qemu-nbd qcow2", missing: qemuMissing, create: (layout) => new QemuQcow2Target(layout) },
    { name: "nbdkit file", missing: nbdkitMissing, create: (layout) => new NbdkitFileTarget(layout) },
    ...baseline,
  ];
}

async function fioNbdMissing(): Promise<string | undefined> {
  try {
    const { stdout } = await run("fio", ["--enghelp=nbd"]);
    return /\buri\b/.test(stdout) ? undefined : "fio has no `nbd` ioengine (built without libnbd)";
  } catch {
    return "fio not found (Debian: fio)";
  }
}

// ── the run ────────────────────────────────────────────────────────────────

async function runGroup(context: BenchContext): Promise<void> {
  const settings = settingsFrom(context, process.env);
  const selectedWorkloads = workloads.filter((workload) => matches(settings.workloadFilter, workload.name));
  printTitle("NBD: okeanos vs qemu-nbd and nbdkit, fio nbd ioengine over unix sockets");
  const fioMissing = await fioNbdMissing();
  if (fioMissing !== undefined) {
    console.log(`skipped: ${fioMissing}`);
    return;
  }
  const runnable: Candidate[] = [];
  for (const candidate of candidates(settings.baselineDir).filter((candidate) => matches(settings.targetFilter, candidate.name))) {
    const missing = await candidate.missing;
    if (missing === undefined) runnable.push(candidate);
    else console.log(`${candidate.name}: SKIPPED, ${missing}`);
  }
  if (runnable.length === 0 || selectedWorkloads.length === 0) {
    console.log("nothing to run");
    return;
  }
  await withTempDir(context.tempParentDir, "nbd", async (dir) => {
    // Ours run before common.ts's handler removes the temp dirs and exits.
    const onSignal = (): void => killAllNow();
    process.prependListener("SIGINT", onSignal);
    process.prependListener("SIGTERM", onSignal);
    process.on("exit", killAllNow);
    const targets: NbdTarget[] = [];
    try {
      // Every target writes its working set; okeanos-cow copies up to the working set per write job.
      const copyUpBytes = settings.rounds * selectedWorkloads.filter(isWrite).length * settings.workingSetBytes;
      await assertFreeSpace(dir, runnable.length * settings.workingSetBytes + copyUpBytes);
      const jobSeconds = settings.runtimeSeconds + 1.5;
      console.log(
        `dir ${dir} (${await fileSystemName(dir)}); exports ${formatBytes(settings.exportSizeBytes)}, working set ${formatBytes(settings.workingSetBytes)} prefilled; ` +
          `${settings.rounds} round(s) × ${selectedWorkloads.length} workloads × ${runnable.length} targets, ${settings.runtimeSeconds} s per job; ` +
          `about ${Math.ceil((settings.rounds * selectedWorkloads.length * runnable.length * jobSeconds) / 60)} min`,
      );
      for (const candidate of runnable) {
        const layout: TargetLayout = {
          dir: join(dir, candidate.name.replace(/[^a-z0-9-]+/g, "-")),
          exportSizeBytes: settings.exportSizeBytes,
          workingSetBytes: settings.workingSetBytes,
        };
        await mkdir(layout.dir);
        const target = candidate.create(layout);
        targets.push(target);
        const startedMs = performance.now();
        await target.setUp();
        console.log(`  ${target.name}: set up and prefilled in ${round((performance.now() - startedMs) / 1000)} s (${target.uri})`);
      }
      const results = await runRounds(targets, selectedWorkloads, settings);
      await printResults(results, targets, selectedWorkloads);
      if (settings.jsonPath !== undefined) {
        await writeFile(settings.jsonPath, JSON.stringify({ settings, loadAverage: loadavg(), results }, null, 2));
        console.log(`every round's numbers written to ${settings.jsonPath}`);
      }
      await profileSlowRows(results, targets, selectedWorkloads, settings);
    } finally {
      await Promise.allSettled(targets.map((target) => target.stop()));
      printServerSummaries(targets);
      killAllNow();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("exit", killAllNow);
    }
  });
}

async function runRounds(targets: readonly NbdTarget[], selected: readonly Workload[], settings: Settings): Promise<Results> {
  const results = new Results();
  for (let roundIndex = 0; roundIndex < settings.rounds; roundIndex++) {
    console.log(`round ${roundIndex + 1}/${settings.rounds} (load average ${loadavg().map((load) => load.toFixed(2)).join(" ")})`);
    for (const [workloadIndex, workload] of selected.entries()) {
      // Rotate who goes first, by round and by workload.
      const shift = (roundIndex + workloadIndex) % targets.length;
      const order = [...targets.slice(shift), ...targets.slice(0, shift)];
      const cells: string[] = [];
      for (const target of order) {
        const result = await runOne(target, workload, settings, join(target.layout.dir, `${workload.name}-${roundIndex + 1}.json`));
        results.add(workload, target.name, roundIndex, result);
        cells.push(`${target.name} ${headline(workload, result)}`);
      }
      console.log(`  ${workload.name.padEnd(18)} ${cells.join(", ")}`);
    }
  }
  return results;
}

/** One job on one target; a failure is reported and leaves a gap rather than ending the run. */
async function runOne(target: NbdTarget, workload: Workload, settings: Settings, outputPath: string): Promise<FioResult | undefined> {
  try {
    await target.beforeJob();
    const cpuBeforeMs = await target.cpuMs();
    const result = await runJob(target.uri, workload, { workingSetBytes: settings.workingSetBytes, runtimeSeconds: settings.runtimeSeconds, outputPath });
    const cpuAfterMs = await target.cpuMs();
    if (cpuBeforeMs !== undefined && cpuAfterMs !== undefined && result.ios > 0) result.serverCpuUsPerOp = ((cpuAfterMs - cpuBeforeMs) * 1000) / result.ios;
    await target.peakRssBytes();
    return result;
  } catch (error) {
    console.log(`  ${target.name} ${workload.name} FAILED: ${String(error)}`);
    const log = await target.server?.logTail();
    if (log !== undefined) console.log(`  server log:\n${log}`);
    return undefined;
  }
}

// ── tables ─────────────────────────────────────────────────────────────────

async function printResults(results: Results, targets: readonly NbdTarget[], selected: readonly Workload[]): Promise<void> {
  const names = new Set(targets.map((target) => target.name));
  const ratioFor = (workload: Workload, peer: string): string => {
    const comparison = comparisons.find((candidate) => candidate.peer === peer);
    return comparison === undefined ? "—" : formatRatio(results.ratio(workload, comparison.ours, peer));
  };
  for (const workload of selected) {
    printTitle(`${workload.name}: medians over rounds; ratio = okeanos (or okeanos-cow for qcow2) ÷ this, per round: median (min–max)`);
    printTable(
      targets.map((target) => {
        const medians = results.medians(workload, target.name);
        const iops = results.results(workload, target.name).map((result) => result.iops);
        return {
          target: target.name,
          IOPS: medians === undefined ? "—" : round(medians.iops),
          "MB/s": medians === undefined ? "—" : round(medians.megabytesPerSecond),
          "p50 µs": medians === undefined ? "—" : round(medians.clatP50Us),
          "p99 µs": medians === undefined ? "—" : round(medians.clatP99Us),
          "server CPU µs/op": medians === undefined ? "—" : round(medians.serverCpuUsPerOp),
          "IOPS min–max": iops.length === 0 ? "—" : `${round(Math.min(...iops))}–${round(Math.max(...iops))}`,
          "okeanos ÷ this": ratioFor(workload, target.name),
        };
      }),
    );
  }
  const summary = selected.map((workload) => {
    const row: Record<string, unknown> = { workload: workload.name };
    for (const target of targets) row[target.name] = headline(workload, results.medians(workload, target.name));
    for (const { ours, peer } of comparisons) {
      if (names.has(ours) && names.has(peer)) row[`${ours} ÷ ${peer}`] = formatRatio(results.ratio(workload, ours, peer));
    }
    return row;
  });
  printTitle("summary: medians; ratios are medians of per-round ratios (min–max); > 1 means okeanos is faster");
  printTable(summary);
  // CPU per request is less sensitive to the machine's load than throughput is.
  const cpu = selected.map((workload) => {
    const row: Record<string, unknown> = { workload: workload.name };
    for (const target of targets) row[target.name] = round(results.medians(workload, target.name)?.serverCpuUsPerOp ?? Number.NaN);
    return row;
  });
  printTitle("server CPU per request, µs (user + system, all threads; median over rounds)");
  printTable(cpu);
  const memory: Array<Record<string, unknown>> = [];
  for (const target of targets) memory.push({ target: target.name, "peak RSS MiB (VmHWM, highest of its server processes)": round((await target.peakRssBytes()) / MiB) });
  printTitle("server memory");
  printTable(memory);
  console.log(`\nmarkdown (for RESULTS.md):\n\n${markdownTable(summary)}\n\n${markdownTable(cpu)}\n\n${markdownTable(memory)}\n`);
}

/** okeanos servers' own counters at each stop (the fast path's calls and backoffs, sync-io.ts). */
function printServerSummaries(targets: readonly NbdTarget[]): void {
  const said = targets.filter((target) => target.serverSummaries.length > 0);
  if (said.length === 0) return;
  printTitle("what the servers said when they stopped (the last of each target's runs)");
  for (const target of said) console.log(`  ${target.name} (${target.serverSummaries.length} runs): ${target.serverSummaries.at(-1) ?? ""}`);
}

// ── profiles ───────────────────────────────────────────────────────────────

/** TARGET:WORKLOAD pairs to profile: the explicit list, or with "auto" every okeanos row behind a peer. */
function profileRequests(results: Results, targets: readonly NbdTarget[], selected: readonly Workload[], setting: string): Array<{ target: string; workload: Workload }> {
  const names = new Set(targets.map((target) => target.name));
  if (setting === "auto") {
    const requests: Array<{ target: string; workload: Workload }> = [];
    for (const workload of selected) {
      for (const { ours, peer } of comparisons) {
        const ratio = results.ratio(workload, ours, peer);
        const already = requests.some((request) => request.target === ours && request.workload === workload);
        if (names.has(ours) && ratio !== undefined && ratio.median < 1 && !already) requests.push({ target: ours, workload });
      }
    }
    return requests;
  }
  return setting
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "")
    .flatMap((item) => {
      const [target = "", workloadName = ""] = item.split(":");
      const workload = selected.find((candidate) => candidate.name === workloadName);
      if (!names.has(target) || !target.startsWith("okeanos") || workload === undefined) {
        console.log(`profile ${item}: ignored (expected okeanos or okeanos-cow, a colon and a workload name)`);
        return [];
      }
      return [{ target, workload }];
    });
}

/** The unprofiled warm-up before a profiled job (okeanos only). */
const profileWarmUpSecondsMax = 5;

async function profileSlowRows(results: Results, targets: readonly NbdTarget[], selected: readonly Workload[], settings: Settings): Promise<void> {
  if (settings.profile === "") return;
  const requests = profileRequests(results, targets, selected, settings.profile);
  if (requests.length === 0) {
    console.log("\nprofiles: no okeanos row is behind a peer; nothing to profile");
    return;
  }
  for (const request of requests) {
    const target = targets.find((candidate) => candidate.name === request.target);
    if (!(target instanceof OkeanosTarget)) continue;
    const dir = join(settings.profileDir, `${target.name}-${request.workload.name}-${Date.now()}`);
    await mkdir(dir, { recursive: true });
    target.cpuProfileDir = dir;
    try {
      // A fresh server process under --cpu-prof (for okeanos-cow, after a fresh snapshot).
      if (target.copyOnWrite) await target.beforeJob();
      else await target.restart();
      // The rounds ran against a warm server (its file store's recent pages, the buffer
      // pool, V8's optimised code): an unprofiled warm-up of the same workload first, so the
      // profile shows that state rather than a cold start. Not for okeanos-cow: its
      // writes would copy up the blocks the profiled job is meant to copy up.
      if (!target.copyOnWrite) {
        await runJob(target.uri, request.workload, {
          workingSetBytes: settings.workingSetBytes,
          runtimeSeconds: Math.min(settings.runtimeSeconds, profileWarmUpSecondsMax),
          outputPath: join(dir, "warm-up.json"),
        });
      }
      const jobStartUs = Number(process.hrtime.bigint() / 1000n);
      const result = await runJob(target.uri, request.workload, {
        workingSetBytes: settings.workingSetBytes,
        runtimeSeconds: settings.runtimeSeconds,
        outputPath: join(dir, "fio.json"),
      });
      const jobEndUs = Number(process.hrtime.bigint() / 1000n);
      target.cpuProfileDir = undefined;
      await target.stop(); // --cpu-prof writes the profile on a clean exit
      const file = (await readdir(dir)).find((name) => name.endsWith(".cpuprofile"));
      printTitle(`profile: ${target.name} during ${request.workload.name} (${headline(request.workload, result)} under the profiler)`);
      if (file === undefined) {
        console.log(`no .cpuprofile in ${dir}: did the server exit cleanly on SIGTERM?`);
        continue;
      }
      const summary = await summariseCpuProfile(join(dir, file), { rootDir: resolve(import.meta.dirname, ".."), fromUs: jobStartUs, toUs: jobEndUs });
      console.log(
        `${join(dir, file)}\nmain thread while fio ran: ${round(summary.wallMs)} ms sampled, ${round(summary.busyMs)} ms busy, ${round(summary.idleMs)} ms idle; ` +
          `GC ${round(summary.gcMs)} ms, (program) ${round(summary.programMs)} ms (native code: libuv, syscalls, Node's C++)`,
      );
      printTable(summary.top.map((entry) => ({ function: entry.frame, "self ms": round(entry.selfMs), "% of busy": round(entry.busyPercent, 2) })));
      printTable(summary.byFile.map((entry) => ({ file: entry.file, "self ms": round(entry.selfMs), "% of busy": round(entry.busyPercent, 2) })));
    } catch (error) {
      console.log(`profile ${target.name} ${request.workload.name} FAILED: ${String(error)}`);
    } finally {
      target.cpuProfileDir = undefined;
      await target.beforeJob().catch(() => undefined);
    }
  }
}

export const nbdGroup: BenchGroup = {
  name: "nbd",
  description: "okeanos nbd serve vs qemu-nbd (raw, qcow2 overlay) and nbdkit file, fio nbd ioengine",
  run: runGroup,
};
