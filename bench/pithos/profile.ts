/**
 * Where an okeanos object-store server spends its time: a fresh server (blake3 store) under
 * `node --cpu-prof`, warmed up (targets.ts warmUp), then driven through four phases one after the other — PUT of the large
 * object, GET of it, wrk PUT and wrk GET of 4 KiB objects at 16 connections — and its
 * profiles summarised phase by phase (../nbd/cpu-profile.ts: self time, samples inside the
 * phase's window only). V8 writes one profile per thread: the main thread's, and one per
 * hashing worker (engine/blocker/hash-pool.ts) that ran.
 *
 * Wall-clock sampling on a shared 2-core VM: time the main thread spent preempted is
 * charged to whatever was on its stack. The server's CPU time per phase (from /proc, all
 * threads) is printed beside it.
 */
import { mkdir, readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { formatBytes, printTable, printTitle, round } from "../common.ts";
import { summariseCpuProfile } from "../nbd/cpu-profile.ts";
import { PithosTarget, storeGetObjects, threadCpuDelta, warmUp, type ThreadCpu } from "./targets.ts";
import { download, upload } from "./transfer.ts";
import { runWrk, type WrkScripts } from "./wrk.ts";

export interface ProfileSettings {
  objectBytes: number;
  wrkSeconds: number;
  getObjects: number;
  profileDir: string;
}

interface Phase {
  name: string;
  fromUs: number;
  toUs: number;
  serverCpuMs: number;
  threads: ThreadCpu;
  outcome: string;
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export async function profileOkeanos(dir: string, settings: ProfileSettings, scripts: WrkScripts | undefined): Promise<void> {
  const profileDir = join(settings.profileDir, new Date().toISOString().replace(/[:.]/g, "-"));
  await mkdir(profileDir, { recursive: true });
  printTitle(`profile: okeanos under node --cpu-prof (${profileDir})`);
  const target = await PithosTarget.start("okeanos", "okeanos profiled", dir, { cpuProfileDir: profileDir });
  const phases: Phase[] = [];
  const phase = async (name: string, body: () => Promise<string>): Promise<void> => {
    const cpuBefore = (await target.cpuMs()) ?? Number.NaN;
    const threadsBefore = await target.threadCpu();
    const fromUs = nowUs();
    const outcome = await body();
    const toUs = nowUs();
    const threads = threadCpuDelta(threadsBefore, await target.threadCpu());
    phases.push({ name, fromUs, toUs, serverCpuMs: ((await target.cpuMs()) ?? Number.NaN) - cpuBefore, threads, outcome });
  };
  try {
    await warmUp(target, 0x7ffe);
    const salt = 0x7fff;
    const url = target.largeObjectUrl("profiled", settings.objectBytes, salt);
    const size = formatBytes(settings.objectBytes);
    const rate = (elapsedMs: number): string => `${round(settings.objectBytes / 1e6 / (elapsedMs / 1000))} MB/s`;
    await phase(`PUT ${size}`, async () => rate((await upload(url, target.authHeaders, settings.objectBytes, salt)).elapsedMs));
    await phase(`GET ${size}`, async () => rate((await download(url, target.authHeaders, settings.objectBytes, salt)).elapsedMs));
    if (scripts !== undefined) {
      await storeGetObjects(target, settings.getObjects);
      const wrk = async (script: string, args: string[]): Promise<string> => {
        const result = await runWrk({ baseUrl: target.info.baseUrl, script, args, threads: 1, connections: 16, seconds: settings.wrkSeconds });
        return `${round(result.requestsPerSecond)} req/s`;
      };
      const token = target.info.token as string;
      await phase("wrk PUT 4 KiB c16", () => wrk(scripts.put, [target.containerPath, token, "profiled", "4096"]));
      await phase("wrk GET 4 KiB c16", () => wrk(scripts.get, [target.containerPath, token, String(settings.getObjects)]));
    }
  } finally {
    await target.stop(); // --cpu-prof writes the profiles on a clean exit
  }
  const files = (await readdir(profileDir)).filter((name) => name.endsWith(".cpuprofile")).sort();
  if (files.length === 0) {
    console.log(`no .cpuprofile in ${profileDir}: did the server exit cleanly on SIGTERM?`);
    return;
  }
  const rootDir = resolve(import.meta.dirname, "../..");
  for (const { name, fromUs, toUs, serverCpuMs, threads, outcome } of phases) {
    const wallMs = (toUs - fromUs) / 1000;
    printTitle(`profile: ${name} (${outcome} under the profiler); server CPU ${round(serverCpuMs)} ms over ${round(wallMs)} ms (${round(serverCpuMs / wallMs, 2)} cores)`);
    const byThread = [...threads].filter(([, used]) => used.userMs + used.systemMs > 0).sort((a, b) => b[1].userMs + b[1].systemMs - (a[1].userMs + a[1].systemMs));
    console.log(`server CPU by thread, user + system ms: ${byThread.map(([kind, used]) => `${kind} ${round(used.userMs)} + ${round(used.systemMs)}`).join(", ")}`);
    for (const file of files) {
      const summary = await summariseCpuProfile(join(profileDir, file), { rootDir, fromUs, toUs, topCount: 20 });
      const whole = await summariseCpuProfile(join(profileDir, file), { rootDir, fromUs, toUs, topCount: Number.MAX_SAFE_INTEGER });
      if (summary.busyMs < 1) continue;
      console.log(
        `${file}: ${round(summary.wallMs)} ms sampled, ${round(summary.busyMs)} ms busy (${round((100 * summary.busyMs) / summary.wallMs, 2)}%), ` +
          `GC ${round(summary.gcMs)} ms, (program) ${round(summary.programMs)} ms`,
      );
      if (summary.busyMs < 0.05 * summary.wallMs) continue;
      printTable(summary.top.map((entry) => ({ function: entry.frame, "self ms": round(entry.selfMs), "% of busy": round(entry.busyPercent, 2) })));
      printTable(byPackage(whole.byFile).map((entry) => ({ "package or folder": entry.name, "self ms": round(entry.selfMs), "% of busy": round(entry.busyPercent, 2) })));
    }
  }
}

/**
 * Self time rolled up by where the code lives: each node_modules package (kysely's query
 * building spreads over dozens of files), each of our top-level folders, Node's internals
 * by module family, and V8's pseudo-frames as they are.
 */
function byPackage(files: ReadonlyArray<{ file: string; selfMs: number; busyPercent: number }>): Array<{ name: string; selfMs: number; busyPercent: number }> {
  const totals = new Map<string, { selfMs: number; busyPercent: number }>();
  for (const { file, selfMs, busyPercent } of files) {
    const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
    const name = packageMatch?.[1] ?? (file.startsWith("node:") ? file.replace(/^node:(internal\/)?([^/]+).*$/, "node:$1$2") : file.startsWith("(") ? file : file.split("/").slice(0, 2).join("/"));
    const total = totals.get(name) ?? { selfMs: 0, busyPercent: 0 };
    total.selfMs += selfMs;
    total.busyPercent += busyPercent;
    totals.set(name, total);
  }
  return [...totals].map(([name, total]) => ({ name, ...total })).sort((a, b) => b.selfMs - a.selfMs).slice(0, 15);
}
