/**
 * The pieces of the VM test: build the guest (build-guest.sh), serve a volume with the real
 * `okeanos nbd serve`, boot qemu-system-x86_64 (TCG) on it and read the guest's result line
 * from the serial console, and copy a volume out through the engine for debugfs to read.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { open, stat } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { Engine } from "../../engine/engine.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { cliEntry } from "../../cli/testing/run-cli.ts";

const execFileAsync = promisify(execFile);

/** The host tools this test needs: qemu-system-x86 boots, e2fsprogs reads, apt builds. */
export const hostTools = ["qemu-system-x86_64", "debugfs", "apt-get", "apt-cache", "dpkg-deb", "gzip"] as const;

/** First run downloads ~28 MB of packages and unpacks the kernel's modules (~15 s here). */
export const guestBuildTimeoutMs = 240_000;
/** A boot under TCG takes ~5 s on an idle core here; 24× that for a loaded CI machine. */
export const bootTimeoutMs = 120_000;
/** Graceful shutdown flushes and unlocks the volume: quick, but allow a busy machine. */
const serverStopTimeoutMs = 30_000;
/** The last lines of a console or log shown when something fails. */
const tailChars = 4_000;

export function missingTools(tools: readonly string[]): string[] {
  const dirs = (process.env["PATH"] ?? "").split(delimiter).filter((dir) => dir !== "");
  // Debian keeps debugfs in /sbin and /usr/sbin, which a non-root PATH may lack.
  dirs.push("/usr/sbin", "/sbin");
  return tools.filter((tool) => !dirs.some((dir) => isExecutable(join(dir, tool))));
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs a host tool found by missingTools (also in /usr/sbin, /sbin). */
export async function runTool(tool: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  const path = `${process.env["PATH"] ?? ""}${delimiter}/usr/sbin${delimiter}/sbin`;
  return execFileAsync(tool, [...args], { env: { ...process.env, PATH: path }, maxBuffer: 64 * 1024 * 1024 });
}

export interface Guest {
  kernelPath: string;
  initrdPath: string;
}

/** Builds the guest, or finds it in the cache (build-guest.sh prints kernel=… initrd=…). */
export async function buildGuest(): Promise<Guest> {
  const script = join(import.meta.dirname, "build-guest.sh");
  const { stdout } = await execFileAsync("bash", [script], { timeout: guestBuildTimeoutMs, maxBuffer: 1024 * 1024 });
  const values = new Map(stdout.split("\n").map((line) => line.split("=", 2) as [string, string]));
  const kernelPath = values.get("kernel");
  const initrdPath = values.get("initrd");
  if (kernelPath === undefined || initrdPath === undefined) throw new Error(`build-guest.sh printed no kernel/initrd:\n${stdout}`);
  return { kernelPath, initrdPath };
}

// ── the NBD server ─────────────────────────────────────────────────────────────

export interface Server {
  /** SIGTERM, then the graceful shutdown must end with exit code 0. */
  stop(): Promise<void>;
  /** SIGKILL, for cleanup after a failure. */
  kill(): void;
}

/** `okeanos nbd serve --socket SOCKET NAME` as a child process; resolves once it listens. */
export async function serveVolume(storeDir: string, name: string, socketPath: string): Promise<Server> {
  const child = spawn(process.execPath, [cliEntry, "--store", `file:${storeDir}`, "nbd", "serve", "--socket", socketPath, name], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OKEANOS_STORE: undefined },
  });
  const output = collect(child);
  const exited = exitOf(child);
  // Node creates the socket file in listen(), which binds and listens in one step.
  while (!(await exists(socketPath))) {
    const early = await Promise.race([exited, sleep(50).then(() => undefined)]);
    if (early !== undefined) throw new Error(`okeanos nbd serve exited (${early}) before listening:\n${output()}`);
  }
  return {
    async stop() {
      child.kill("SIGTERM");
      const code = await Promise.race([exited, sleep(serverStopTimeoutMs).then(() => "timeout")]);
      if (code === "timeout") {
        child.kill("SIGKILL");
        throw new Error(`okeanos nbd serve did not stop within ${serverStopTimeoutMs} ms of SIGTERM:\n${output()}`);
      }
      if (code !== "code 0") throw new Error(`okeanos nbd serve stopped with ${code}:\n${output()}`);
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

// ── the VM ─────────────────────────────────────────────────────────────────────

export interface BootOptions {
  socketPath: string;
  exportName: string;
  /** okeanos.* parameters for the guest's /init (guest-init.sh): task, token, lines, note. */
  params: Record<string, string>;
}

export interface BootResult {
  /** The guest's `OKEANOS-VM: …` line, without the prefix; e.g. `write-done token=… sha256=…`. */
  result: string;
  /** key=value fields of the result line. */
  fields: Map<string, string>;
  console: string;
  elapsedMs: number;
}

/**
 * Boots the guest with the export attached as a virtio disk over NBD (the same drive as
 * `-drive file=nbd+unix:///NAME?socket=SOCKET,format=raw,if=virtio`, spelled out so that a
 * path needs no URI escaping), waits for power-off and returns the guest's result line.
 */
export async function bootGuest(guest: Guest, options: BootOptions): Promise<BootResult> {
  if (/[,\s]/.test(options.socketPath)) throw new Error(`qemu -drive options cannot carry ${JSON.stringify(options.socketPath)}`);
  const params = Object.entries(options.params).map(([key, value]) => `okeanos.${key}=${value}`);
  const args = [
    ...["-machine", "accel=tcg", "-m", "256", "-smp", "1"],
    // No default NIC, VGA, floppy or CD-ROM: nothing to probe, and the serial port on stdio.
    ...["-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"],
    ...["-kernel", guest.kernelPath, "-initrd", guest.initrdPath],
    // panic=-1: a failing /init panics, the kernel reboots, -no-reboot makes qemu exit.
    ...["-append", ["console=ttyS0", "panic=-1", ...params].join(" ")],
    "-drive",
    `driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=${options.socketPath},file.export=${options.exportName},if=virtio`,
  ];
  const started = performance.now();
  const child = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
  const output = collect(child);
  const code = await Promise.race([exitOf(child), sleep(bootTimeoutMs).then(() => "timeout")]);
  const elapsedMs = performance.now() - started;
  if (code === "timeout") child.kill("SIGKILL");
  const consoleText = output().replaceAll("\r", "");
  const match = /^OKEANOS-VM: (.*)$/m.exec(consoleText);
  if (code !== "code 0" || match === null || match[1]?.startsWith("error") === true) {
    throw new Error(`guest boot failed (qemu ${code} after ${Math.round(elapsedMs)} ms, result ${match?.[1] ?? "none"}):\n…${consoleText.slice(-tailChars)}`);
  }
  const result = match[1] as string;
  const fields = new Map(result.split(" ").slice(1).map((field) => field.split("=", 2) as [string, string]));
  return { result, fields, console: consoleText, elapsedMs };
}

// ── reading a volume through the engine ────────────────────────────────────────

/**
 * Copies a volume, snapshot or clone to a sparse raw file, through the engine (read-only
 * open: no lock, the map as it is now), for debugfs to read the guest's file system.
 */
export async function exportThroughEngine(storeDir: string, name: string, rawPath: string): Promise<void> {
  const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
  try {
    const volume = await engine.openVolume(name, { readOnly: true });
    try {
      const file = await open(rawPath, "w");
      try {
        await file.truncate(volume.sizeBytes);
        // Zero extents stay holes; the rest is copied a block at a time.
        for (const extent of volume.blockStatus(0, volume.sizeBytes)) {
          if (extent.zero) continue;
          const endBytes = extent.offsetBytes + extent.lengthBytes;
          for (let offset = extent.offsetBytes; offset < endBytes; offset += volume.blockSizeBytes) {
            const lengthBytes = Math.min(volume.blockSizeBytes, endBytes - offset);
            await file.write(await volume.read(offset, lengthBytes), 0, lengthBytes, offset);
          }
        }
      } finally {
        await file.close();
      }
    } finally {
      await volume.close();
    }
  } finally {
    await engine.close();
  }
}

/** A file of the guest's ext2 file system, read with e2fsprogs' debugfs; undefined if absent. */
export async function readGuestFile(rawPath: string, guestPath: string): Promise<string | undefined> {
  const { stdout, stderr } = await runTool("debugfs", ["-R", `cat ${guestPath}`, rawPath]);
  // debugfs exits 0 either way; a missing file is a message on stderr.
  if (/not found|ext2_lookup/i.test(stderr)) return undefined;
  return stdout;
}

// ── process plumbing ───────────────────────────────────────────────────────────

function collect(child: ChildProcess): () => string {
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (chunk: Buffer) => chunks.push(chunk));
  child.stderr?.on("data", (chunk: Buffer) => chunks.push(chunk));
  return () => Buffer.concat(chunks).toString("utf8");
}

/** "code N" or "signal S", once the process has exited. */
function exitOf(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve(code === null ? `signal ${signal}` : `code ${code}`));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
