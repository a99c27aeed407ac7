/**
 * Cross-process locks held with flock(2) on a lock file, for the file backend.
 *
 * Node has no flock API, so the lock is taken by util-linux flock(1) on a descriptor we
 * share with it: flock locks belong to the open file description, the child locks ours
 * and exits, and the lock stays held as long as our FileHandle stays open. The kernel
 * drops it when we close the handle or die, even by SIGKILL — no lease, no stale lock.
 * A second open of the same file (another process, or this one) gets its own open file
 * description, which conflicts: the lock excludes callers in this process too.
 *
 * The lock file holds a JSON holder record, written after acquiring an exclusive lock, read
 * by whoever is refused. A shared lock (LOCK_SH, for many holders at once) writes none:
 * its holders would overwrite each other's; a refused exclusive caller then names
 * "shared holders" instead. The file is never deleted: deleting it would let a newcomer lock a fresh inode
 * while the old holder still locks the unlinked one.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { EngineError } from "../errors.ts";
import type { LockHolder, LockMode, ObjectLock } from "./object-store.ts";

/** Exit status we ask flock(1) to use for "held by someone else", distinct from its error statuses (64+, sysexits.h). */
const flockBusyExitCode = 75;

/**
 * A holder record is one line of JSON: owner (a volume or map name, ≤ 200 bytes), host
 * (HOST_NAME_MAX 64), pid and a timestamp — well under 1 KiB. 4 KiB bounds the read of a
 * damaged file.
 */
const holderRecordMaxBytes = 4096;

/**
 * lockHolder() probes with a shared flock held for one flock(1) run (spawn to exit, a few
 * ms); a lock() landing in that window is refused spuriously. Retrying twice, 25 ms apart,
 * outlasts a probe; a real holder costs the refused caller 50 ms.
 */
const lockBusyAttempts = 3;
const lockBusyRetryMs = 25;

/** Takes the lock at `path` for `owner`, or throws EVOLUME_LOCKED naming the holder. */
export async function acquireFlock(path: string, name: string, owner: string, mode: LockMode = "exclusive"): Promise<ObjectLock> {
  for (let attempt = 1; ; attempt++) {
    const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      if ((await runFlock(handle, mode)) === "acquired") return await FlockLock.start(handle, path, name, owner, mode);
      // An exclusive holder left its record; shared holders write none (a stale record may be there).
      if (attempt >= lockBusyAttempts) throw lockedError(name, await readHolder(handle), mode);
    } catch (error) {
      await handle.close();
      throw error;
    }
    await handle.close();
    await sleep(lockBusyRetryMs);
  }
}

/** The holder of the lock at `path` if it is held now, else undefined. */
export async function probeFlockHolder(path: string): Promise<LockHolder | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    // A shared lock conflicts only with an exclusive one; closing the handle drops it.
    if ((await runFlock(handle, "shared")) === "acquired") return undefined;
    return (await readHolder(handle)) ?? unknownHolder();
  } finally {
    await handle.close();
  }
}

class FlockLock implements ObjectLock {
  readonly name: string;
  readonly holder: LockHolder;
  readonly #path: string;
  #handle: FileHandle | undefined;

  private constructor(handle: FileHandle, path: string, name: string, holder: LockHolder) {
    this.#handle = handle;
    this.#path = path;
    this.name = name;
    this.holder = holder;
  }

  static async start(handle: FileHandle, path: string, name: string, owner: string, mode: LockMode): Promise<FlockLock> {
    const holder: LockHolder = { owner, host: hostname(), pid: process.pid, acquiredAtMs: Date.now() };
    if (mode === "exclusive") {
      const record = Buffer.from(`${JSON.stringify(holder)}\n`);
      await handle.truncate(0);
      await handle.write(record, 0, record.length, 0);
      await handle.datasync();
    }
    const lock = new FlockLock(handle, path, name, holder);
    await lock.renew();
    return lock;
  }

  /**
   * flock locks have no lease: held while our descriptor is open. Renewal checks that it
   * is, and that the lock file at the path is still the inode we lock (not deleted and
   * re-created, which would let someone else lock the new one).
   */
  async renew(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) throw new EngineError("EVOLUME_LOCKED", `lock ${this.name} was released`, { holder: this.holder });
    const [locked, current] = await Promise.all([handle.stat(), stat(this.#path).catch(() => undefined)]);
    if (current === undefined || current.ino !== locked.ino || current.dev !== locked.dev) {
      throw new EngineError("EVOLUME_LOCKED", `lock file of ${this.name} was replaced: the lock is lost`, { holder: this.holder });
    }
  }

  /** Closes our descriptor, which drops the flock. The lock file stays (see the header). */
  async release(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

/** Runs `flock --nonblock` on our open file description (the child's fd 3). */
function runFlock(handle: FileHandle, mode: LockMode): Promise<"acquired" | "busy"> {
  const args = [`--${mode}`, "--nonblock", "--conflict-exit-code", String(flockBusyExitCode), "3"];
  return new Promise((resolve, reject) => {
    const child = spawn("flock", args, { stdio: ["ignore", "ignore", "pipe", handle.fd] });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", (error) => reject(new EngineError("EIO", `cannot run flock(1) from util-linux: ${error.message}`, {}, { cause: error })));
    child.on("close", (code) => {
      if (code === 0) resolve("acquired");
      else if (code === flockBusyExitCode) resolve("busy");
      else reject(new EngineError("EIO", `flock(1) failed with status ${code}: ${stderr.trim()}`));
    });
  });
}

async function readHolder(handle: FileHandle): Promise<LockHolder | undefined> {
  const buffer = Buffer.alloc(holderRecordMaxBytes);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
  try {
    return parseHolder(JSON.parse(buffer.subarray(0, bytesRead).toString("utf8")));
  } catch {
    // Empty (the holder is between truncate and write) or damaged: holder unknown.
    return undefined;
  }
}

function parseHolder(value: unknown): LockHolder | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { owner, host, pid, acquiredAtMs } = value as Record<string, unknown>;
  if (typeof owner !== "string" || typeof host !== "string" || typeof pid !== "number" || typeof acquiredAtMs !== "number") return undefined;
  return { owner, host, pid, acquiredAtMs };
}

function unknownHolder(): LockHolder {
  return { owner: "unknown", host: "unknown", pid: 0, acquiredAtMs: 0 };
}

function lockedError(name: string, holder: LockHolder | undefined, mode: LockMode): EngineError {
  if (mode === "shared") {
    // Only an exclusive hold refuses a shared one, and exclusive holders leave their record.
    return new EngineError("EVOLUME_LOCKED", `${name} is locked exclusively by ${holder === undefined ? "another process" : describeHolder(holder)}`, {
      holder: holder ?? unknownHolder(),
    });
  }
  if (holder === undefined) {
    return new EngineError("EVOLUME_LOCKED", `${name} is locked by another process (its holder record is unreadable)`, { holder: unknownHolder() });
  }
  return new EngineError("EVOLUME_LOCKED", `${name} is locked by ${describeHolder(holder)}`, { holder });
}

function describeHolder(holder: LockHolder): string {
  return `${holder.owner} (pid ${holder.pid} on ${holder.host}, since ${new Date(holder.acquiredAtMs).toISOString()})`;
}
