/**
 * QemuDriver: HypervisorDriver (compute/driver.ts) with one daemonized QEMU process per
 * instance on this host, controlled over QMP, its state in one directory per instance
 * (layout.ts). Nothing lives only in memory: a fresh QemuDriver over the same state directory
 * (the service restarted) finds every instance again through its pid file.
 *
 * Within one driver, the actions on an instance (start, stop, reboot, destroy) run one at a
 * time; status, consoleLog and vnc do not wait for them. Every QMP use is one short session,
 * because QEMU's monitor serves a single client at a time.
 */
import { randomInt } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { mkdir, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { resolve } from "node:path";
import type { AttachedDisk, HypervisorDriver, InstanceSpec, InstanceStatus, PowerState, VncEndpoint } from "../driver.ts";
import { ComputeError } from "../errors.ts";
import { checkSpec, qemuArgs, type HostChoices } from "./args.ts";
import { checkAttachedDisk, plugDisk, unplugDisk, type QmpCall, type UnplugPatience } from "./disks.ts";
import { instanceIdPattern, instanceLayout, type InstanceLayout } from "./layout.ts";
import { writeSeedIso } from "./nocloud.ts";
import { instancePid, logTailBytes, runDaemonizing, signalInstance, tail, waitForExit } from "./process.ts";
import { isQmpError, qmpExecute } from "./qmp.ts";

/** QEMU's first process returns once the machine is built and the NBD disks connected; a loaded host may take many seconds. */
export const startTimeoutMsDefault = 60_000;
/** One readiness probe of a QEMU found starting: a local monitor answers at once when it is up. */
const readyProbeTimeoutMs = 1000;
/** Between readiness probes. */
const readyPollMs = 200;
/** One QMP session (connect, greeting, one command); status() falls back to the pid when it times out. */
export const qmpTimeoutMsDefault = 10_000;
/** After `quit` QEMU closes (flushes) the disks and exits: quick unless an NBD server hangs. */
export const quitWaitMs = 10_000;
/** After SIGKILL the process is gone as soon as the kernel has torn it down. */
export const killWaitMs = 10_000;
/**
 * A restart of `okeanos serve` (drain, reopen the store, listen again) takes seconds; a minute
 * covers a slow one, and still ends a guest's wait when the engine is really gone.
 */
export const nbdReconnectDelaySecondsDefault = 60;
/** Nova's console token lifetime (consoleauth token_ttl, 600 s): the password expires with the URL. */
export const vncPasswordLifetimeSecondsDefault = 600;
/**
 * How long a detach waits for the guest to release the disk, asking again every
 * detachRetryMsDefault. Linux answers an ACPI eject in well under a second, a loaded TCG guest
 * in seconds; Nova's libvirt driver asks 8 times, 20 s apart (device_detach_attempts,
 * device_detach_timeout), and so do we.
 */
export const detachTimeoutMsDefault = 160_000;
export const detachRetryMsDefault = 20_000;
/** RFB's VNC authentication uses the first 8 bytes of the password as a DES key. */
export const vncPasswordLength = 8;
/** console.log grows while a guest runs (a file chardev cannot rotate); at each start a log over this size… */
export const consoleLogBytesMax = 1024 * 1024;
/** …is cut to its last this many bytes. */
export const consoleLogKeptBytes = 64 * 1024;

const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

export interface QemuDriverOptions {
  /** One directory per instance below it. */
  stateDir: string;
  /** Default `qemu-system-x86_64`, found on PATH. */
  binary?: string;
  /** Default "auto": KVM when /dev/kvm is readable and writable, else TCG. */
  accel?: "auto" | "kvm" | "tcg";
  nbdReconnectDelaySeconds?: number;
  vncPasswordLifetimeSeconds?: number;
  /** Default `genisoimage`, found on PATH. */
  genisoimage?: string;
  startTimeoutMs?: number;
  qmpTimeoutMs?: number;
  detachTimeoutMs?: number;
  detachRetryMs?: number;
}

/** query-status's RunState (qapi/run-state.json) as a power state. */
function powerOf(runState: string): PowerState {
  switch (runState) {
    case "running":
      return "running";
    case "internal-error":
    case "guest-panicked":
      return "crashed";
    case "shutdown": // only with -no-shutdown, which we do not use
      return "shutdown";
    default: // paused, suspended, io-error (werror=stop), inmigrate, prelaunch, watchdog…
      return "paused";
  }
}

export class QemuDriver implements HypervisorDriver {
  readonly kind = "qemu";
  readonly stateDir: string;
  readonly #binary: string;
  readonly #host: HostChoices;
  readonly #vncPasswordLifetimeSeconds: number;
  readonly #genisoimage: string;
  readonly #startTimeoutMs: number;
  readonly #qmpTimeoutMs: number;
  readonly #unplugPatience: UnplugPatience;
  /** The tail of each instance's queue of actions. */
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(options: QemuDriverOptions) {
    this.stateDir = resolve(options.stateDir);
    this.#binary = options.binary ?? "qemu-system-x86_64";
    const accel = options.accel ?? "auto";
    this.#host = {
      accel: accel === "auto" ? (kvmUsable() ? "kvm" : "tcg") : accel,
      nbdReconnectDelaySeconds: options.nbdReconnectDelaySeconds ?? nbdReconnectDelaySecondsDefault,
    };
    this.#vncPasswordLifetimeSeconds = options.vncPasswordLifetimeSeconds ?? vncPasswordLifetimeSecondsDefault;
    this.#genisoimage = options.genisoimage ?? "genisoimage";
    this.#startTimeoutMs = options.startTimeoutMs ?? startTimeoutMsDefault;
    this.#qmpTimeoutMs = options.qmpTimeoutMs ?? qmpTimeoutMsDefault;
    this.#unplugPatience = { timeoutMs: options.detachTimeoutMs ?? detachTimeoutMsDefault, retryMs: options.detachRetryMs ?? detachRetryMsDefault };
  }

  /** "kvm" or "tcg": what start() asks QEMU for. */
  get accel(): "kvm" | "tcg" {
    return this.#host.accel;
  }

  /** The instance's directory and files (for tests and diagnostics). */
  layout(id: string): InstanceLayout {
    return instanceLayout(this.stateDir, id);
  }

  async start(spec: InstanceSpec): Promise<void> {
    checkSpec(spec);
    const layout = this.layout(spec.id);
    await this.#serialized(spec.id, () => this.#start(spec, layout));
  }

  async stop(id: string, options: { graceMs: number }): Promise<void> {
    const layout = this.layout(id);
    await this.#serialized(id, () => this.#stop(layout, options.graceMs));
  }

  async reboot(spec: InstanceSpec, kind: "soft" | "hard", options: { graceMs: number }): Promise<void> {
    checkSpec(spec);
    const layout = this.layout(spec.id);
    await this.#serialized(spec.id, async () => {
      const pid = await instancePid(layout.pidFile);
      if (kind === "hard" && pid !== undefined) {
        await this.#qmp(layout, "system_reset");
        return;
      }
      await this.#stop(layout, options.graceMs);
      await this.#start(spec, layout);
    });
  }

  async destroy(id: string): Promise<void> {
    const layout = this.layout(id);
    await this.#serialized(id, async () => {
      const pid = await instancePid(layout.pidFile);
      if (pid !== undefined) await this.#kill(layout, pid);
      await rm(layout.dir, { recursive: true, force: true });
    });
  }

  async status(id: string): Promise<InstanceStatus> {
    const layout = this.layout(id);
    const pid = await instancePid(layout.pidFile);
    if (pid === undefined) return { power: "shutdown" };
    try {
      const { status } = await qmpExecute<{ status: string }>(layout.qmpSocket, "query-status", undefined, { timeoutMs: this.#qmpTimeoutMs });
      return { power: powerOf(status), pid };
    } catch (error) {
      if (!isQmpError(error)) throw error;
      // Still ours and alive, but its monitor did not answer (busy with another client): running.
      if ((await instancePid(layout.pidFile)) === pid) return { power: "running", pid };
      return { power: "shutdown" }; // it exited meanwhile
    }
  }

  async list(): Promise<string[]> {
    const entries = await readdir(this.stateDir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [];
      throw error;
    });
    return entries
      .filter((entry) => entry.isDirectory() && instanceIdPattern.test(entry.name))
      .map((entry) => entry.name)
      .sort();
  }

  async consoleLog(id: string, bytesMax: number): Promise<string> {
    return tail(this.layout(id).consoleLog, bytesMax);
  }

  async vnc(id: string): Promise<VncEndpoint> {
    const layout = this.layout(id);
    if ((await instancePid(layout.pidFile)) === undefined) throw new ComputeError("ECONFLICT", `instance ${id} is not running`);
    const password = Array.from({ length: vncPasswordLength }, () => passwordAlphabet[randomInt(passwordAlphabet.length)]).join("");
    await this.#qmp(layout, "set_password", { protocol: "vnc", password });
    await this.#qmp(layout, "expire_password", { protocol: "vnc", time: `+${this.#vncPasswordLifetimeSeconds}` });
    return { address: { kind: "unix", path: layout.vncSocket }, password };
  }

  /** disks.ts plugDisk on the running instance; a stopped one starts with it (spec.extraDisks). */
  async attachDisk(id: string, disk: AttachedDisk): Promise<void> {
    checkAttachedDisk(disk);
    const layout = this.layout(id);
    await this.#serialized(id, async () => {
      if ((await instancePid(layout.pidFile)) === undefined) return;
      await plugDisk(this.#qmpCall(layout), disk, this.#host);
    });
  }

  /** disks.ts unplugDisk on the running instance; a stopped one has no disks to take out. */
  async detachDisk(id: string, diskId: string): Promise<void> {
    checkAttachedDisk({ id: diskId } as AttachedDisk);
    const layout = this.layout(id);
    await this.#serialized(id, async () => {
      if ((await instancePid(layout.pidFile)) === undefined) return;
      await unplugDisk(this.#qmpCall(layout), diskId, this.#unplugPatience);
    });
  }

  // ── the actions, called inside #serialized ─────────────────────────────────────

  async #start(spec: InstanceSpec, layout: InstanceLayout): Promise<void> {
    const existing = await instancePid(layout.pidFile);
    // QEMU writes its pid file early in its start-up; a launch interrupted by a crash of
    // `okeanos serve` leaves one whose QEMU may still fail. Running means its monitor answers.
    if (existing !== undefined && (await this.#waitUntilReady(layout, existing))) return;
    // No pid file of ours, but a monitor answering: a QEMU we cannot account for would share
    // the sockets and write the same volume. Refuse rather than start a second one.
    if (await socketAnswers(layout.qmpSocket)) {
      throw new ComputeError("EHYPERVISOR", `a process without a valid pid file answers on ${layout.qmpSocket}; not starting a second QEMU`);
    }
    await mkdir(layout.dir, { recursive: true, mode: 0o700 });
    const saved = { ...spec, seed: { ...spec.seed, userData: spec.seed.userData?.toString("base64") } };
    await writeFile(layout.specFile, `${JSON.stringify(saved, null, 2)}\n`, { mode: 0o600 });
    await writeSeedIso(spec.seed, layout.seedIso, { genisoimage: this.#genisoimage });
    await trimConsoleLog(layout.consoleLog);
    for (const stale of [layout.pidFile, layout.qmpSocket, layout.vncSocket]) await rm(stale, { force: true });
    await runDaemonizing(this.#binary, qemuArgs(spec, layout, this.#host), {
      logPath: layout.qemuLog,
      cwd: layout.dir,
      timeoutMs: this.#startTimeoutMs,
    });
    if ((await instancePid(layout.pidFile)) === undefined) {
      throw new ComputeError("EHYPERVISOR", `${this.#binary} started but no process of instance ${spec.id} runs:\n${await tail(layout.qemuLog, logTailBytes)}`);
    }
  }

  /**
   * True once the instance's monitor answers; false if its process exits first (then it never
   * became ready, and a new QEMU may start); EHYPERVISOR if neither happens in startTimeoutMs.
   */
  async #waitUntilReady(layout: InstanceLayout, pid: number): Promise<boolean> {
    const deadline = performance.now() + this.#startTimeoutMs;
    for (;;) {
      try {
        await qmpExecute(layout.qmpSocket, "query-status", undefined, { timeoutMs: Math.min(this.#qmpTimeoutMs, readyProbeTimeoutMs) });
        return true;
      } catch (error) {
        if (!isQmpError(error)) throw error;
      }
      if ((await instancePid(layout.pidFile)) !== pid) return false;
      if (performance.now() >= deadline) {
        throw new ComputeError("EHYPERVISOR", `instance process ${pid} runs but its monitor did not answer within ${this.#startTimeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, readyPollMs));
    }
  }

  /** ACPI power button; after graceMs `quit` (QEMU flushes and closes the disks); then SIGKILL. */
  async #stop(layout: InstanceLayout, graceMs: number): Promise<void> {
    const pid = await instancePid(layout.pidFile);
    if (pid === undefined) return;
    await this.#qmp(layout, "system_powerdown").catch(ignoreQmpError);
    if (await waitForExit(pid, layout.pidFile, graceMs)) return;
    await this.#qmp(layout, "quit").catch(ignoreQmpError); // QEMU may close before it answers
    if (await waitForExit(pid, layout.pidFile, quitWaitMs)) return;
    await this.#kill(layout, pid);
  }

  async #kill(layout: InstanceLayout, pid: number): Promise<void> {
    await signalInstance(pid, layout.pidFile, "SIGKILL");
    if (!(await waitForExit(pid, layout.pidFile, killWaitMs))) {
      throw new ComputeError("EHYPERVISOR", `QEMU process ${pid} is still there ${killWaitMs} ms after SIGKILL`);
    }
    await rm(layout.pidFile, { force: true }); // a killed QEMU leaves it
  }

  async #qmp<T = unknown>(layout: InstanceLayout, command: string, args?: Record<string, unknown>): Promise<T> {
    try {
      return await qmpExecute<T>(layout.qmpSocket, command, args, { timeoutMs: this.#qmpTimeoutMs });
    } catch (error) {
      if (isQmpError(error)) throw new ComputeError("EHYPERVISOR", `${command} on ${layout.dir}: ${error.message}`, { cause: error });
      throw error;
    }
  }

  #qmpCall(layout: InstanceLayout): QmpCall {
    return (command, args) => this.#qmp(layout, command, args);
  }

  /** Runs `action` after every earlier action on the same instance has settled. */
  async #serialized<T>(id: string, action: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(id) ?? Promise.resolve();
    const run = previous.then(action, action);
    const settled = run.catch(() => undefined);
    this.#queues.set(id, settled);
    try {
      return await run;
    } finally {
      if (this.#queues.get(id) === settled) this.#queues.delete(id);
    }
  }
}

function ignoreQmpError(error: unknown): void {
  if (error instanceof ComputeError && isQmpError(error.cause)) return;
  throw error;
}

/** /dev/kvm usable by this user: QEMU opens it read-write. */
function kvmUsable(): boolean {
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** True if something accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

/** Keeps the console log bounded across boots: over consoleLogBytesMax, only its tail stays. */
async function trimConsoleLog(path: string): Promise<void> {
  const found = await stat(path).catch(() => undefined);
  if (found === undefined || found.size <= consoleLogBytesMax) return;
  const kept = await tail(path, consoleLogKeptBytes);
  await truncate(path, 0);
  await writeFile(path, kept, { flag: "a" });
}
