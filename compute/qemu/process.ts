/**
 * QEMU processes seen from outside: started with -daemonize (so they outlive the serving
 * process and are re-adopted by the next one), found again through their pid file, and
 * checked to really be ours before anything is believed or signalled.
 *
 * A pid file can outlive its process (SIGKILL, a host crash) and the pid be recycled by
 * anything. So a pid counts as our instance only while /proc/PID/cmdline names that very pid
 * file after -pidfile (the path holds the instance id), and the process is not a zombie.
 */
import { spawn } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { ComputeError } from "../errors.ts";

/** How often a wait for a process to exit looks again. */
export const exitPollIntervalMs = 50;
/** The tail of qemu.log quoted in an error. */
export const logTailBytes = 4_000;

export async function readPidFile(pidFile: string): Promise<number | undefined> {
  const text = await readFile(pidFile, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

/** The process's argv, or undefined when it is gone or a zombie (exited, not yet reaped). */
async function commandLine(pid: number): Promise<string[] | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  // "PID (COMM) STATE …": COMM may hold spaces and parentheses; the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  if (state === "Z" || state === "X") return undefined;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined);
  if (cmdline === undefined || cmdline === "") return undefined;
  return cmdline.split("\0");
}

/** True while `pid` is alive and is the QEMU that was started with `-pidfile pidFile`. */
export async function isInstanceProcess(pid: number, pidFile: string): Promise<boolean> {
  const argv = await commandLine(pid);
  if (argv === undefined) return false;
  return argv.some((arg, index) => arg === "-pidfile" && argv[index + 1] === pidFile);
}

/** The pid of the instance's running QEMU, or undefined (no pid file, or a stale one). */
export async function instancePid(pidFile: string): Promise<number | undefined> {
  const pid = await readPidFile(pidFile);
  if (pid === undefined) return undefined;
  return (await isInstanceProcess(pid, pidFile)) ? pid : undefined;
}

/** Resolves true once the process is gone, false if it is still there after `timeoutMs`. */
export async function waitForExit(pid: number, pidFile: string, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (!(await isInstanceProcess(pid, pidFile))) return true;
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, exitPollIntervalMs));
  }
}

/** Signals the instance's process, if it is still ours. */
export async function signalInstance(pid: number, pidFile: string, signal: NodeJS.Signals): Promise<void> {
  if (!(await isInstanceProcess(pid, pidFile))) return;
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/**
 * Runs QEMU with -daemonize: the first process exits once the machine is set up (0) or has
 * failed (1, its error on stderr); the daemon it leaves runs on in a session of its own.
 * stdout and stderr go to `logPath`, so errors survive in the instance directory.
 */
export async function runDaemonizing(binary: string, args: readonly string[], options: { logPath: string; cwd: string; timeoutMs: number }): Promise<void> {
  const log = await open(options.logPath, "a");
  try {
    const outcome = await new Promise<string>((resolve, reject) => {
      const child = spawn(binary, [...args], { cwd: options.cwd, stdio: ["ignore", log.fd, log.fd] });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve(`no answer within ${options.timeoutMs} ms`);
      }, options.timeoutMs);
      child.once("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (error.code === "ENOENT") {
          reject(new ComputeError("EHYPERVISOR", `${binary} not found: the QEMU driver needs it (apt-get install qemu-system-x86)`, { cause: error }));
        } else reject(new ComputeError("EHYPERVISOR", `cannot run ${binary}: ${error.message}`, { cause: error }));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        resolve(code === 0 ? "ok" : code === null ? `signal ${signal}` : `exit code ${code}`);
      });
    });
    if (outcome !== "ok") {
      throw new ComputeError("EHYPERVISOR", `${binary} failed to start (${outcome}):\n${await tail(options.logPath, logTailBytes)}`);
    }
  } finally {
    await log.close();
  }
}

/** The last `bytesMax` bytes of a file as text, starting at a character boundary; "" if absent. */
export async function tail(path: string, bytesMax: number): Promise<string> {
  let file;
  try {
    file = await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
  try {
    const { size } = await file.stat();
    const length = Math.min(size, Math.max(0, bytesMax));
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await file.read(buffer, 0, length, size - length);
    let start = 0;
    // A cut inside a multi-byte UTF-8 sequence: skip its continuation bytes (10xxxxxx).
    while (length < size && start < bytesRead && ((buffer[start] as number) & 0xc0) === 0x80) start++;
    return buffer.subarray(start, bytesRead).toString("utf8");
  } finally {
    await file.close();
  }
}
