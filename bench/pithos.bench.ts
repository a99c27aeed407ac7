/**
 * The object store (gateways/pithos, Swift API) against two plain node:http servers on
 * loopback (issue 6, "bench/pithos"): the ceiling, which stores nothing (the most any HTTP
 * service in Node moves on this machine), and a plain file server, one fsync'ed file per
 * object (what the disk costs, without blocks, hashes, maps or metadata). Every server is a
 * child process (bench/pithos/server.ts), so the load generator's CPU never shares the
 * server's event loop.
 *
 *   large   1 GiB PUT then GET, one object, node:http streaming the pattern
 *           (bench/pithos/pattern.ts: distinct non-zero 4 MiB blocks, the download checked
 *           byte for byte); MB/s, server CPU per GiB (all threads, and by kind of thread),
 *           and ratios per round. Targets: okeanos on a blake3 store (the default), okeanos
 *           on a sha256 store (bit-exact Pithos+ hashmaps), the plain file server, the ceiling
 *   small   4 KiB objects with wrk (bench/pithos/wrk.ts): PUT of a new object per request,
 *           GET cycling over 1000 stored objects; requests/s at 1 and 16 connections
 *   rounds  every round runs every row on every target, the targets in a rotating order;
 *           tables show medians over rounds and ratios taken round by round
 *
 * Settings (environment, since `npm run bench` takes only group names and --quick):
 *   OKEANOS_BENCH_PITHOS_ROUNDS       rounds (default 3; --quick: 1)
 *   OKEANOS_BENCH_PITHOS_SECONDS      seconds per wrk run (default 10; --quick: 2)
 *   OKEANOS_BENCH_PITHOS_PROFILE      "1": afterwards, one more upload, download, wrk PUT
 *                                     and wrk GET against a fresh okeanos under
 *                                     `node --cpu-prof`, summarised per phase
 *   OKEANOS_BENCH_PITHOS_PROFILE_DIR  where the profiles are kept (default $TMPDIR/okeanos-pithos-profiles)
 */
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { GiB, MiB, assertFreeSpace, fileSystemName, formatBytes, median, megabytesPerSecond, printTable, printTitle, round, withTempDir, type BenchContext, type BenchGroup } from "./common.ts";
import { killAllNow } from "./nbd/processes.ts";
import { markdownTable } from "./nbd/report.ts";
import { profileOkeanos } from "./pithos/profile.ts";
import { PithosTarget, smallObjectBytes, storeGetObjects, threadCpuDelta, warmUp, warmUpBytes, type ThreadCpu } from "./pithos/targets.ts";
import { preparePattern } from "./pithos/pattern.ts";
import { download, upload } from "./pithos/transfer.ts";
import { runWrk, wrkMissing, writeWrkScripts, type WrkResult, type WrkScripts } from "./pithos/wrk.ts";

export interface PithosSettings {
  rounds: number;
  objectBytes: number;
  wrkSeconds: number;
  connections: number[];
  /** Small objects stored beforehand for the GET rows. */
  getObjects: number;
  profile: boolean;
  profileDir: string;
}

function settingsFrom(context: BenchContext, env: NodeJS.ProcessEnv): PithosSettings {
  const number = (name: string, fallback: number): number => {
    const text = env[name];
    if (text === undefined || text === "") return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${text}: expected a positive number`);
    return value;
  };
  return {
    rounds: Math.round(number("OKEANOS_BENCH_PITHOS_ROUNDS", context.quick ? 1 : 3)),
    objectBytes: context.quick ? 64 * MiB : 1 * GiB,
    wrkSeconds: number("OKEANOS_BENCH_PITHOS_SECONDS", context.quick ? 2 : 10),
    connections: [1, 16],
    getObjects: context.quick ? 100 : 1000,
    profile: env["OKEANOS_BENCH_PITHOS_PROFILE"] === "1",
    profileDir: resolve(env["OKEANOS_BENCH_PITHOS_PROFILE_DIR"] ?? join(tmpdir(), "okeanos-pithos-profiles")),
  };
}

const loadAverage = (): string => loadavg().map((load) => load.toFixed(2)).join(" ");
const rotate = <T>(items: readonly T[], by: number): T[] => [...items.slice(by % items.length), ...items.slice(0, by % items.length)];

interface Ratio {
  median: number;
  min: number;
  max: number;
}

function ratioOf(ours: readonly number[], peer: readonly number[]): Ratio | undefined {
  const ratios = ours.map((value, index) => value / (peer[index] as number)).filter((value) => Number.isFinite(value));
  if (ratios.length === 0) return undefined;
  return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

const formatRatio = (ratio: Ratio | undefined): string =>
  ratio === undefined ? "—" : `${round(ratio.median, 2)} (${round(ratio.min, 2)}–${round(ratio.max, 2)})`;

// ── large objects ──────────────────────────────────────────────────────────

interface LargeSample {
  upMegabytesPerSecond: number;
  downMegabytesPerSecond: number;
  upServerCpuMs: number;
  downServerCpuMs: number;
  upClientCpuMs: number;
  downClientCpuMs: number;
  /** From the last byte sent to the 201: the blocks still in flight, the barrier, the commit. */
  upTailMs: number;
  upThreads: ThreadCpu;
  downThreads: ThreadCpu;
}

async function runLarge(targets: readonly PithosTarget[], settings: PithosSettings): Promise<Map<string, LargeSample[]>> {
  const samples = new Map<string, LargeSample[]>(targets.map((target) => [target.name, []]));
  preparePattern();
  for (const [index, target] of targets.entries()) await warmUp(target, 1000 + index);
  for (let roundIndex = 0; roundIndex < settings.rounds; roundIndex++) {
    console.log(`large round ${roundIndex + 1}/${settings.rounds} (load average ${loadAverage()})`);
    for (const target of rotate(targets, roundIndex)) {
      // A new salt per round and target: every upload stores blocks no earlier one stored.
      const salt = roundIndex * targets.length + targets.indexOf(target) + 1;
      const url = target.largeObjectUrl(`large-${roundIndex}`, settings.objectBytes, salt);
      const [cpu0, threads0] = [await target.cpuMs(), await target.threadCpu()];
      const up = await upload(url, target.authHeaders, settings.objectBytes, salt);
      const [cpu1, threads1] = [await target.cpuMs(), await target.threadCpu()];
      const down = await download(url, target.authHeaders, settings.objectBytes, salt);
      const [cpu2, threads2] = [await target.cpuMs(), await target.threadCpu()];
      const sample: LargeSample = {
        upMegabytesPerSecond: megabytesPerSecond(settings.objectBytes, up.elapsedMs),
        downMegabytesPerSecond: megabytesPerSecond(settings.objectBytes, down.elapsedMs),
        upServerCpuMs: (cpu1 ?? Number.NaN) - (cpu0 ?? Number.NaN),
        downServerCpuMs: (cpu2 ?? Number.NaN) - (cpu1 ?? Number.NaN),
        upClientCpuMs: up.clientCpuMs,
        downClientCpuMs: down.clientCpuMs,
        upTailMs: up.tailMs,
        upThreads: threadCpuDelta(threads0, threads1),
        downThreads: threadCpuDelta(threads1, threads2),
      };
      samples.get(target.name)?.push(sample);
      console.log(`  ${target.name.padEnd(16)} PUT ${round(sample.upMegabytesPerSecond)} MB/s (last byte to 201: ${round(up.tailMs)} ms), GET ${round(sample.downMegabytesPerSecond)} MB/s (checked)`);
    }
  }
  return samples;
}

function largeTables(samples: Map<string, LargeSample[]>, settings: PithosSettings): Array<Record<string, unknown>> {
  const ceiling = samples.get("ceiling") ?? [];
  const plainFile = samples.get("plain file") ?? [];
  const gibs = settings.objectBytes / GiB;
  const rows: Array<Record<string, unknown>> = [];
  for (const [name, list] of samples) {
    for (const direction of ["PUT", "GET"] as const) {
      const pick = (sample: LargeSample): number => (direction === "PUT" ? sample.upMegabytesPerSecond : sample.downMegabytesPerSecond);
      const values = list.map(pick);
      rows.push({
        target: name,
        transfer: `${direction} ${formatBytes(settings.objectBytes)}`,
        "MB/s": round(median(values)),
        "MB/s min–max": `${round(Math.min(...values))}–${round(Math.max(...values))}`,
        "server CPU s/GiB": round(median(list.map((sample) => (direction === "PUT" ? sample.upServerCpuMs : sample.downServerCpuMs) / 1000 / gibs))),
        "client CPU s/GiB": round(median(list.map((sample) => (direction === "PUT" ? sample.upClientCpuMs : sample.downClientCpuMs) / 1000 / gibs))),
        "last byte → 201 ms": direction === "PUT" ? round(median(list.map((sample) => sample.upTailMs))) : "—",
        "÷ ceiling": name === "ceiling" ? "1" : formatRatio(ratioOf(values, ceiling.map(pick))),
        "÷ plain file": name === "plain file" ? "1" : formatRatio(ratioOf(values, plainFile.map(pick))),
      });
    }
  }
  return rows;
}

/** Thread names as Node sets them (targets.ts ThreadCpu), in the order of the table's columns. */
const threadKinds = ["MainThread", "libuv-worker", "WorkerThread", "V8Worker"] as const;

/** Server CPU per GiB by kind of thread, user+system (system part in brackets); medians over rounds, per column. */
function threadTable(samples: Map<string, LargeSample[]>, settings: PithosSettings): Array<Record<string, unknown>> {
  const gibs = settings.objectBytes / GiB;
  const rows: Array<Record<string, unknown>> = [];
  for (const [name, list] of samples) {
    for (const direction of ["PUT", "GET"] as const) {
      const threads = list.map((sample) => (direction === "PUT" ? sample.upThreads : sample.downThreads));
      const row: Record<string, unknown> = { target: name, transfer: direction };
      const cell = (pick: (cpu: ThreadCpu) => { userMs: number; systemMs: number }): string => {
        const used = threads.map(pick);
        const total = round(median(used.map((cpu) => (cpu.userMs + cpu.systemMs) / 1000 / gibs)), 2);
        return `${total} (${round(median(used.map((cpu) => cpu.systemMs / 1000 / gibs)), 2)})`;
      };
      for (const kind of threadKinds) row[`${kind} s/GiB (sys)`] = cell((cpu) => cpu.get(kind) ?? { userMs: 0, systemMs: 0 });
      const sum = (cpu: ThreadCpu, include: (kind: string) => boolean): { userMs: number; systemMs: number } => {
        let userMs = 0;
        let systemMs = 0;
        for (const [kind, used] of cpu) {
          if (!include(kind)) continue;
          userMs += used.userMs;
          systemMs += used.systemMs;
        }
        return { userMs, systemMs };
      };
      row["other threads s/GiB (sys)"] = cell((cpu) => sum(cpu, (kind) => !(threadKinds as readonly string[]).includes(kind)));
      row["all s/GiB (sys)"] = cell((cpu) => sum(cpu, () => true));
      rows.push(row);
    }
  }
  return rows;
}

// ── small objects ──────────────────────────────────────────────────────────

interface SmallSample extends WrkResult {
  serverCpuUsPerRequest: number;
}

type SmallKey = `${"PUT" | "GET"} c${number} ${string}`;

async function runSmall(targets: readonly PithosTarget[], scripts: WrkScripts, settings: PithosSettings): Promise<Map<SmallKey, SmallSample[]>> {
  const samples = new Map<SmallKey, SmallSample[]>();
  for (let roundIndex = 0; roundIndex < settings.rounds; roundIndex++) {
    console.log(`small round ${roundIndex + 1}/${settings.rounds} (load average ${loadAverage()})`);
    for (const operation of ["PUT", "GET"] as const) {
      for (const connections of settings.connections) {
        const cells: string[] = [];
        for (const target of rotate(targets, roundIndex)) {
          const token = target.info.token ?? "none";
          const args =
            operation === "PUT"
              ? [target.containerPath, token, `r${roundIndex}c${connections}`, String(smallObjectBytes)]
              : [target.containerPath, token, String(settings.getObjects)];
          const cpuBefore = await target.cpuMs();
          const result = await runWrk({
            baseUrl: target.info.baseUrl,
            script: operation === "PUT" ? scripts.put : scripts.get,
            args,
            threads: 1,
            connections,
            seconds: settings.wrkSeconds,
          });
          const cpuAfter = await target.cpuMs();
          const key: SmallKey = `${operation} c${connections} ${target.name}`;
          const sample = { ...result, serverCpuUsPerRequest: (((cpuAfter ?? Number.NaN) - (cpuBefore ?? Number.NaN)) * 1000) / result.requests };
          samples.set(key, [...(samples.get(key) ?? []), sample]);
          cells.push(`${target.name} ${round(result.requestsPerSecond)} req/s`);
        }
        console.log(`  ${operation} 4 KiB, ${String(connections).padStart(2)} connection(s): ${cells.join(", ")}`);
      }
    }
  }
  return samples;
}

function smallTables(samples: Map<SmallKey, SmallSample[]>, targets: readonly PithosTarget[], settings: PithosSettings): Array<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = [];
  for (const operation of ["PUT", "GET"] as const) {
    for (const connections of settings.connections) {
      const rates = (name: string): number[] => (samples.get(`${operation} c${connections} ${name}`) ?? []).map((sample) => sample.requestsPerSecond);
      for (const target of targets) {
        const list = samples.get(`${operation} c${connections} ${target.name}`) ?? [];
        if (list.length === 0) continue;
        const ours = list.map((sample) => sample.requestsPerSecond);
        rows.push({
          request: `${operation} 4 KiB`,
          connections,
          target: target.name,
          "req/s": round(median(ours)),
          "req/s min–max": `${round(Math.min(...ours))}–${round(Math.max(...ours))}`,
          "p50 ms": round(median(list.map((sample) => sample.latencyP50Us / 1000))),
          "p99 ms": round(median(list.map((sample) => sample.latencyP99Us / 1000))),
          "server CPU µs/req": round(median(list.map((sample) => sample.serverCpuUsPerRequest))),
          "÷ ceiling": target.name === "ceiling" ? "1" : formatRatio(ratioOf(ours, rates("ceiling"))),
          "÷ plain file": target.name === "plain file" ? "1" : formatRatio(ratioOf(ours, rates("plain file"))),
        });
      }
    }
  }
  return rows;
}

// ── the run ────────────────────────────────────────────────────────────────

async function runGroup(context: BenchContext): Promise<void> {
  const settings = settingsFrom(context, process.env);
  printTitle("pithos: object store (Swift API) vs plain node:http on loopback: no storage (ceiling) and one file per object");
  const missingWrk = await wrkMissing();
  if (missingWrk !== undefined) console.log(`small objects SKIPPED: ${missingWrk}`);
  await withTempDir(context.tempParentDir, "pithos", async (dir) => {
    // Ours run before common.ts's handler removes the temp dirs and exits.
    const onSignal = (): void => killAllNow();
    process.prependListener("SIGINT", onSignal);
    process.prependListener("SIGTERM", onSignal);
    process.on("exit", killAllNow);
    const targets: PithosTarget[] = [];
    try {
      // Two okeanos stores and the plain file server keep every round's object, plus the profile's.
      await assertFreeSpace(dir, (3 * settings.rounds + 1) * settings.objectBytes + 4 * warmUpBytes);
      console.log(
        `dir ${dir} (${await fileSystemName(dir)}); ${formatBytes(settings.objectBytes)} object, ${settings.rounds} round(s), ` +
          `wrk ${settings.wrkSeconds} s per run at ${settings.connections.join(" and ")} connection(s), 1 wrk thread; servers are child processes`,
      );
      targets.push(await PithosTarget.start("okeanos", "okeanos", join(dir, "okeanos")));
      targets.push(await PithosTarget.start("okeanos", "okeanos sha256", join(dir, "okeanos-sha256"), { hashAlgorithm: "sha256" }));
      targets.push(await PithosTarget.start("file", "plain file", join(dir, "plain-file")));
      targets.push(await PithosTarget.start("ceiling", "ceiling", join(dir, "ceiling")));
      const large = await runLarge(targets, settings);
      const largeRows = largeTables(large, settings);
      printTitle(`large object: medians over ${settings.rounds} round(s); ÷ ceiling per round: median (min–max); > 1 means faster than the ceiling`);
      printTable(largeRows);
      const threadRows = threadTable(large, settings);
      printTitle("large object: server CPU by thread, s per GiB moved, user + system (system in brackets), medians over rounds");
      printTable(threadRows);

      let smallRows: Array<Record<string, unknown>> = [];
      if (missingWrk === undefined) {
        const smallTargets = targets.filter((target) => target.name !== "okeanos sha256");
        for (const target of smallTargets) if (target.kind !== "ceiling") await storeGetObjects(target, settings.getObjects);
        const small = await runSmall(smallTargets, await writeWrkScripts(dir), settings);
        smallRows = smallTables(small, smallTargets, settings);
        printTitle("small objects (wrk, 1 thread): medians over rounds; ÷ ceiling per round: median (min–max)");
        printTable(smallRows);
      }
      console.log(`\nmarkdown (for RESULTS.md):\n\n${markdownTable(largeRows)}\n\n${markdownTable(threadRows)}\n\n${markdownTable(smallRows)}\n`);
      await Promise.all(targets.splice(0).map((target) => target.stop()));
      if (settings.profile) await profileOkeanos(join(dir, "profiled"), settings, missingWrk === undefined ? await writeWrkScripts(dir) : undefined);
    } finally {
      await Promise.allSettled(targets.map((target) => target.stop()));
      killAllNow();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("exit", killAllNow);
    }
  });
}

export const pithosGroup: BenchGroup = {
  name: "pithos",
  description: "object store: 1 GiB PUT/GET and 4 KiB PUT/GET req/s (wrk) vs a plain loopback HTTP server",
  run: runGroup,
};
