/**
 * The pieces of the VM test: build the guest (build-guest.sh), serve a volume with the real
 * `okeanos nbd serve`, boot qemu-system-x86_64 (TCG) on it and read the guest's result line
 * from the serial console (or, for a guest that keeps running, wait for its marker lines and
 * write it a line), make an ext4 image and import it, and copy a volume out through the
 * engine for debugfs to read.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, open, rm, stat, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { Engine } from "../../engine/engine.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { cliEntry, runCli } from "../../cli/testing/run-cli.ts";

const execFileAsync = promisify(execFile);

/** The host tools this test needs: qemu-system-x86 boots, e2fsprogs makes and reads file systems, apt builds. */
export const hostTools = ["qemu-system-x86_64", "debugfs", "mkfs.ext4", "apt-get", "apt-cache", "dpkg-deb", "gzip"] as const;

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
  /** The serving process: the pid its volume locks name. */
  pid: number;
  /** SIGTERM, then the graceful shutdown must end with exit code 0. */
  stop(): Promise<void>;
  /** SIGKILL, for cleanup after a failure. */
  kill(): void;
}

/** `okeanos nbd serve --socket SOCKET NAME` as a child process; resolves once it listens and its control socket is open. */
export async function serveVolume(storeDir: string, name: string, socketPath: string): Promise<Server> {
  const child = spawn(process.execPath, [cliEntry, "--store", `file:${storeDir}`, "nbd", "serve", "--socket", socketPath, name], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OKEANOS_STORE: undefined },
  });
  const output = collect(child);
  const exited = exitOf(child);
  // The banner comes after the NBD socket listens and the control socket is open.
  while (!output().includes("SIGINT or SIGTERM") || !(await exists(socketPath))) {
    const early = await Promise.race([exited, sleep(50).then(() => undefined)]);
    if (early !== undefined) throw new Error(`okeanos nbd serve exited (${early}) before listening:\n${output()}`);
  }
  return {
    pid: child.pid as number,
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
  /**
   * qemu's NBD reconnect-delay: while the server is away (a restart), requests wait this long
   * for it to come back instead of failing at once. Unset: no reconnection.
   */
  reconnectDelaySeconds?: number;
  /** A NoCloud seed (an ISO 9660 image, makeSeedIso) as a second, read-only virtio disk (/dev/vdb). */
  seedIsoPath?: string;
  /** A QMP socket for pressPowerButton (the cloud task waits for the ACPI power button). */
  qmpSocketPath?: string;
}

export interface BootResult {
  /** The guest's `OKEANOS-VM: …` line, without the prefix; e.g. `write-done token=… sha256=…`. */
  result: string;
  /** key=value fields of the result line. */
  fields: Map<string, string>;
  console: string;
  elapsedMs: number;
}

/** Boots the guest (startGuest), waits for power-off and returns the guest's result line. */
export async function bootGuest(guest: Guest, options: BootOptions): Promise<BootResult> {
  return startGuest(guest, options).result;
}

/** A guest that is running: its console so far, its marker lines, a line to it, its result. */
export interface RunningGuest {
  console(): string;
  /** Resolves with the first console line matching `pattern` (searched from the start); fails if qemu exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Writes a line to the guest's console (qemu's stdin). */
  send(line: string): void;
  /** The ACPI power button (QMP system_powerdown), as the compute service's stop presses it; needs qmpSocketPath. */
  pressPowerButton(): Promise<void>;
  /** Power-off and the result line, as bootGuest returns them. */
  result: Promise<BootResult>;
}

/**
 * Boots the guest with the export attached as a virtio disk over NBD (the same drive as
 * `-drive file=nbd+unix:///NAME?socket=SOCKET,format=raw,if=virtio`, spelled out so that a
 * path needs no URI escaping), with the serial console on qemu's stdin and stdout.
 */
export function startGuest(guest: Guest, options: BootOptions): RunningGuest {
  if (/[,\s]/.test(options.socketPath)) throw new Error(`qemu -drive options cannot carry ${JSON.stringify(options.socketPath)}`);
  const params = Object.entries(options.params).map(([key, value]) => `okeanos.${key}=${value}`);
  const args = [
    ...["-machine", "accel=tcg", "-m", "256", "-smp", "1"],
    // No default NIC, VGA, floppy or CD-ROM: nothing to probe, and the serial port on stdio.
    ...["-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"],
    ...["-kernel", guest.kernelPath, "-initrd", guest.initrdPath],
    // panic=-1: a failing /init panics, the kernel reboots, -no-reboot makes qemu exit.
    // loglevel=5: errors and warnings reach the console, notices and info do not — the kernel
    // writes to the console past the tty, and an info line landing inside the guest's result
    // line ("…note=9ca76[    3.547474] ACPI: PM: Preparing to enter system sleep state S5")
    // garbles it.
    ...["-append", ["console=ttyS0", "loglevel=5", "panic=-1", ...params].join(" ")],
    "-drive",
    [
      `driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=${options.socketPath},file.export=${options.exportName}`,
      ...(options.reconnectDelaySeconds === undefined ? [] : [`file.reconnect-delay=${options.reconnectDelaySeconds}`]),
      "if=virtio",
    ].join(","),
    ...(options.seedIsoPath === undefined ? [] : ["-drive", `driver=raw,file.driver=file,file.filename=${options.seedIsoPath.replaceAll(",", ",,")},read-only=on,if=virtio`]),
    ...(options.qmpSocketPath === undefined ? [] : ["-qmp", `unix:${options.qmpSocketPath.replaceAll(",", ",,")},server=on,wait=off`]),
  ];
  const started = performance.now();
  const child = spawn("qemu-system-x86_64", args, { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin?.on("error", () => undefined); // qemu gone: the result says why
  const output = collect(child);
  const consoleText = () => output().replaceAll("\r", "");
  const exited = exitOf(child);
  let code: string | undefined;
  const result = (async (): Promise<BootResult> => {
    code = await Promise.race([exited, sleep(bootTimeoutMs).then(() => "timeout")]);
    const elapsedMs = performance.now() - started;
    if (code === "timeout") child.kill("SIGKILL");
    const text = consoleText();
    const match = /^OKEANOS-VM: (.*)$/m.exec(text);
    if (code !== "code 0" || match === null || match[1]?.startsWith("error") === true) {
      throw new Error(`guest boot failed (qemu ${code} after ${Math.round(elapsedMs)} ms, result ${match?.[1] ?? "none"}):\n…${text.slice(-tailChars)}`);
    }
    const line = match[1] as string;
    const fields = new Map(line.split(" ").slice(1).map((field) => field.split("=", 2) as [string, string]));
    return { result: line, fields, console: text, elapsedMs };
  })();
  result.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  return {
    console: consoleText,
    async waitFor(pattern, timeoutMs = bootTimeoutMs) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(consoleText());
        if (match !== null) return match;
        if (code !== undefined || performance.now() > deadline) {
          throw new Error(`the guest ${code === undefined ? "did not print" : `ended (qemu ${code}) without printing`} ${pattern}:\n…${consoleText().slice(-tailChars)}`);
        }
        await sleep(50);
      }
    },
    send(line) {
      child.stdin?.write(`${line}\n`);
    },
    async pressPowerButton() {
      if (options.qmpSocketPath === undefined) throw new Error("pressPowerButton needs qmpSocketPath");
      await qmpCommands(options.qmpSocketPath, ["qmp_capabilities", "system_powerdown"]);
    },
    result,
  };
}

/**
 * Runs QMP commands (no arguments) one after the other on a fresh connection: the greeting,
 * then each command's `return` (an `error` reply or an early close fails).
 */
async function qmpCommands(socketPath: string, commands: readonly string[]): Promise<void> {
  const socket = createConnection(socketPath);
  socket.setEncoding("utf8");
  const lines: string[] = [];
  let buffered = "";
  let waiting: (() => void) | undefined;
  let closed = false;
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
      lines.push(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
    waiting?.();
  });
  const end = () => {
    closed = true;
    waiting?.();
  };
  socket.on("close", end);
  socket.on("error", end);
  /** The next message that is not an event. */
  const next = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      const line = lines.shift();
      if (line !== undefined) {
        const message = JSON.parse(line) as Record<string, unknown>;
        if (!("event" in message)) return message;
        continue;
      }
      if (closed) throw new Error(`QMP at ${socketPath} closed`);
      await new Promise<void>((resolve) => (waiting = resolve));
    }
  };
  try {
    await next(); // {"QMP": {...}}
    for (const command of commands) {
      socket.write(`${JSON.stringify({ execute: command })}\n`);
      const reply = await next();
      if (!("return" in reply)) throw new Error(`QMP ${command}: ${JSON.stringify(reply)}`);
    }
  } finally {
    socket.destroy();
  }
}

/** A NoCloud seed, as compute/qemu/nocloud.ts makes one: genisoimage, label `cidata`, Joliet and Rock Ridge. */
export async function makeSeedIso(isoPath: string, files: Record<string, string>, scratchDir: string): Promise<void> {
  const staging = await mkdtemp(join(scratchDir, "seed-"));
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(join(staging, name), content);
    await runTool("genisoimage", ["-output", isoPath, "-volid", "cidata", "-joliet", "-rock", "-input-charset", "utf-8", "-quiet", ...Object.keys(files).map((name) => join(staging, name))]);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

// ── volumes with a file system made on the host ────────────────────────────────

/**
 * A volume holding an empty ext4 file system, made by the host's mkfs.ext4 on a sparse raw
 * file and imported with `okeanos volume import`. ext4 (busybox mke2fs only makes ext2) has a
 * journal: a snapshot taken while the guest writes is, to the clone, a crash it recovers from.
 */
export async function importExt4Volume(storeDir: string, name: string, sizeBytes: number, scratchDir: string): Promise<void> {
  const rawPath = `${scratchDir}/${name}.ext4.raw`;
  const file = await open(rawPath, "w");
  try {
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
  try {
    await runTool("mkfs.ext4", ["-q", "-F", "-L", "okeanos", rawPath]);
    const imported = await runCli(["--store", `file:${storeDir}`, "volume", "import", rawPath, name]);
    if (imported.code !== 0) throw new Error(`okeanos volume import failed (${imported.code}): ${imported.stderr}`);
  } finally {
    await rm(rawPath, { force: true });
  }
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

/** The file system's feature flags (`needs_recovery` when it was mounted: its journal must be replayed). */
export async function fileSystemFeatures(rawPath: string): Promise<string[]> {
  const { stdout } = await runTool("debugfs", ["-R", "stats", rawPath]);
  const match = /^Filesystem features:\s*(.*)$/m.exec(stdout);
  if (match === null) throw new Error(`debugfs stats shows no features:\n${stdout.slice(0, tailChars)}`);
  return (match[1] as string).trim().split(/\s+/);
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
