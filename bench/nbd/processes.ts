/**
 * Child processes of the NBD benchmark: servers (qemu-nbd, nbdkit, `okeanos nbd serve`) and
 * the short-lived tools (fio, qemu-img, the okeanos CLI).
 *
 * Every child is tracked until it exits. `killAllNow()` SIGKILLs whatever is left; the group
 * calls it in a `finally`, on SIGINT/SIGTERM (before common.ts removes the temp dirs) and on
 * process exit, so no server outlives the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

const liveChildren = new Set<ChildProcess>();

/** SIGKILLs every child still running. Synchronous: safe in 'exit' and signal handlers. */
export function killAllNow(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  liveChildren.clear();
}

function track(child: ChildProcess): void {
  liveChildren.add(child);
  child.once("exit", () => liveChildren.delete(child));
}

/** stdout and stderr kept for error messages: the last `tailBytes` of each. */
const tailBytes = 4096;

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a tool to completion; a non-zero exit throws with the command line and its stderr. */
export async function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
  track(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout = (stdout + chunk).slice(-tailBytes * 4)));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-tailBytes)));
  const exit = await exited(child);
  if (exit.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${exit.signal ?? `exit ${exit.code}`}):\n${stderr.trim() || stdout.trim()}`);
  }
  return { stdout, stderr };
}

/** True when `command` can be started (found on PATH and executable). */
export async function commandExists(command: string, versionArgs: readonly string[] = ["--version"]): Promise<boolean> {
  try {
    await run(command, versionArgs);
    return true;
  } catch {
    return false;
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function exited(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * A long-running server. Its stdout and stderr go to `logPath`, which is quoted when it
 * fails to start. `peakRssBytes` is the highest VmHWM seen across samples.
 */
export class ServerProcess {
  readonly child: ChildProcess;
  readonly logPath: string;
  #peakRssBytes = 0;

  constructor(command: string, args: readonly string[], logPath: string, env?: NodeJS.ProcessEnv) {
    this.logPath = logPath;
    const log = createWriteStream(logPath, { flags: "a" });
    this.child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...(env === undefined ? {} : { env }) });
    track(this.child);
    this.child.stdout?.pipe(log, { end: false });
    this.child.stderr?.pipe(log, { end: false });
    this.child.once("exit", () => log.end());
    // A failed spawn (ENOENT) surfaces through waitUntilServing.
    this.child.on("error", () => undefined);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  /** Waits until `socketPath` accepts connections; throws with the server's log if it exits or times out. */
  async waitUntilServing(socketPath: string, timeoutMs = 60_000): Promise<void> {
    const deadlineMs = performance.now() + timeoutMs;
    while (performance.now() < deadlineMs) {
      if (!this.running) throw new Error(`server exited before serving ${socketPath}:\n${await this.logTail()}`);
      if (await accepts(socketPath)) return;
      await sleep(50);
    }
    throw new Error(`server did not serve ${socketPath} within ${timeoutMs} ms:\n${await this.logTail()}`);
  }

  /** Reads VmHWM (peak resident set) from /proc; remembers the highest value seen. */
  async sampleRss(): Promise<number> {
    if (this.running && this.pid !== undefined) {
      const status = await readFile(`/proc/${this.pid}/status`, "utf8").catch(() => "");
      const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
      if (match?.[1] !== undefined) this.#peakRssBytes = Math.max(this.#peakRssBytes, Number(match[1]) * 1024);
    }
    return this.#peakRssBytes;
  }

  get peakRssBytes(): number {
    return this.#peakRssBytes;
  }

  /**
   * CPU time the server has used so far, all threads, user + system (ms), from
   * /proc/PID/stat; undefined once it has exited. Resolution: one clock tick (10 ms).
   */
  async cpuMs(): Promise<number | undefined> {
    if (!this.running || this.pid === undefined) return undefined;
    const stat = await readFile(`/proc/${this.pid}/stat`, "utf8").catch(() => undefined);
    if (stat === undefined) return undefined;
    // Fields after "(comm)", which may itself hold spaces: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3]);
    return Number.isFinite(ticks) ? (ticks * 1000) / (await clockTicksPerSecond()) : undefined;
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs`. Resolves once the process is gone. The RSS is
   * sampled first: VmHWM disappears with the process.
   */
  async stop(graceMs = 60_000): Promise<Exit> {
    await this.sampleRss();
    if (this.running) this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    try {
      return await exited(this.child);
    } finally {
      clearTimeout(timer);
    }
  }

  async logTail(): Promise<string> {
    const text = await readFile(this.logPath, "utf8").catch(() => "");
    return text.slice(-tailBytes).trim() || "(no output)";
  }
}

let clockTicks: Promise<number> | undefined;

/** sysconf(_SC_CLK_TCK), the unit of /proc/PID/stat's times: 100 on every Linux we run on. */
function clockTicksPerSecond(): Promise<number> {
  clockTicks ??= run("getconf", ["CLK_TCK"]).then(
    ({ stdout }) => Number(stdout.trim()) || 100,
    () => 100,
  );
  return clockTicks;
}

function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}
