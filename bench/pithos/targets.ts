/**
 * The servers under test, seen from the load generator: each one a child process
 * (bench/pithos/server.ts), started, waited for (its DIR/ready.json), measured (CPU time
 * from /proc) and stopped with SIGTERM. Child processes are tracked by ../nbd/processes.ts,
 * which kills whatever is left on exit and Ctrl-C.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { KiB, MiB } from "../common.ts";
import { run, ServerProcess } from "../nbd/processes.ts";
import { download, simpleRequest, upload } from "./transfer.ts";

export const benchUser = { name: "bench", password: "bench-secret" };
export const benchContainer = "c";
export const smallObjectBytes = 4 * KiB;

/** What a server child writes to DIR/ready.json once it listens. */
export interface ReadyInfo {
  baseUrl: string;
  /** okeanos only: the bench user's token and storage URL (`…/object-store/v1/AUTH_<uuid>`). */
  token?: string;
  storageUrl?: string;
  pid: number;
}

export type TargetKind = "okeanos" | "ceiling" | "file";

export interface StartOptions {
  /** okeanos: the store's hash (blake3 by default, sha256 is the Pithos-compatible store). */
  hashAlgorithm?: "blake3" | "sha256";
  /** Run under `node --cpu-prof`, writing the profiles (main thread and workers) here. */
  cpuProfileDir?: string;
}

const serverPath = fileURLToPath(new URL("./server.ts", import.meta.url));
const startTimeoutMs = 60_000;

export class PithosTarget {
  readonly kind: TargetKind;
  readonly name: string;
  readonly process: ServerProcess;
  readonly info: ReadyInfo;

  private constructor(kind: TargetKind, name: string, process: ServerProcess, info: ReadyInfo) {
    this.kind = kind;
    this.name = name;
    this.process = process;
    this.info = info;
  }

  /** Starts a server with its state (store, database, log) in a fresh `dir`. */
  static async start(kind: TargetKind, name: string, dir: string, options: StartOptions = {}): Promise<PithosTarget> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const nodeArgs = options.cpuProfileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", options.cpuProfileDir];
    const args = [...nodeArgs, serverPath, kind, dir, ...(options.hashAlgorithm === undefined ? [] : [options.hashAlgorithm])];
    // servePithos makes its file store under os.tmpdir(): keep it inside the bench dir.
    const child = new ServerProcess(process.execPath, args, join(dir, "server.log"), { ...process.env, TMPDIR: dir });
    const deadlineMs = performance.now() + startTimeoutMs;
    while (performance.now() < deadlineMs) {
      if (!child.running) throw new Error(`${name} exited before it served:\n${await child.logTail()}`);
      const text = await readFile(join(dir, "ready.json"), "utf8").catch(() => undefined);
      if (text !== undefined) return new PithosTarget(kind, name, child, JSON.parse(text) as ReadyInfo);
      await sleep(50);
    }
    await child.stop(1000);
    throw new Error(`${name} did not serve within ${startTimeoutMs} ms:\n${await child.logTail()}`);
  }

  /** Headers every request to this target carries (the token; the ceiling ignores it). */
  get authHeaders(): Record<string, string> {
    return this.info.token === undefined ? {} : { "x-auth-token": this.info.token };
  }

  /** The URL path objects go under: the container (`/object-store/v1/AUTH_…/c`), or a plain server's `/ceiling` or `/file`. */
  get containerPath(): string {
    if (this.info.storageUrl === undefined) return `/${this.kind}`;
    return `${new URL(this.info.storageUrl).pathname}/${benchContainer}`;
  }

  /** Where the large object goes: an object, or the ceiling's /large (which serves `salt`'s pattern). */
  largeObjectUrl(name: string, totalBytes: number, salt: number): string {
    if (this.kind === "ceiling") return `${this.info.baseUrl}/large?bytes=${totalBytes}&salt=${salt}`;
    return `${this.info.baseUrl}${this.containerPath}/${name}`;
  }

  cpuMs(): Promise<number | undefined> {
    return this.process.cpuMs();
  }

  /** CPU time so far per kind of thread (see ThreadCpu); threads that already exited are not counted. */
  threadCpu(): Promise<ThreadCpu> {
    return threadCpuOf(this.process.pid);
  }

  async stop(): Promise<void> {
    const exit = await this.process.stop();
    if (exit.code !== 0) console.log(`  ${this.name} exited with ${exit.signal ?? `code ${exit.code}`}:\n${await this.process.logTail()}`);
  }
}

/** The GET rows read these: `get-0` … `get-(n-1)`, 4 KiB each, stored before timing, 8 at a time. */
export async function storeGetObjects(target: PithosTarget, count: number): Promise<void> {
  const inFlight = 8;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let index = next++; index < count; index = next++) {
      const body = Buffer.alloc(smallObjectBytes, `get-${index} `);
      const { status } = await simpleRequest(`${target.info.baseUrl}${target.containerPath}/get-${index}`, "PUT", target.authHeaders, body);
      if (status !== 201) throw new Error(`storing get-${index} on ${target.name}: ${status}`);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/**
 * Before the first timed transfer, each target moves this much once, untimed: JIT, socket
 * buffers and okeanos's hashing threads (started on first use; each loads and type-strips
 * its module, about a second on this machine) are then warm for every round alike.
 */
export const warmUpBytes = 64 * MiB;

export async function warmUp(target: PithosTarget, salt: number): Promise<void> {
  const url = target.largeObjectUrl(`warm-up-${salt}`, warmUpBytes, salt);
  await upload(url, target.authHeaders, warmUpBytes, salt);
  await download(url, target.authHeaders, warmUpBytes, salt);
}

/**
 * CPU ms (user, system) per thread name, from /proc/PID/task/TID/stat. Node names its
 * threads: MainThread (the event loop), libuv-worker (the fs thread pool), WorkerThread
 * (worker_threads: the hash pool), V8Worker (GC and compiler helpers).
 */
export type ThreadCpu = Map<string, { userMs: number; systemMs: number }>;

let clockTicksPerSecond: Promise<number> | undefined;

async function threadCpuOf(pid: number | undefined): Promise<ThreadCpu> {
  const out: ThreadCpu = new Map();
  if (pid === undefined) return out;
  // sysconf(_SC_CLK_TCK), the unit of the stat times: 100 on every Linux we run on.
  clockTicksPerSecond ??= run("getconf", ["CLK_TCK"]).then(({ stdout }) => Number(stdout.trim()) || 100, () => 100);
  const msPerTick = 1000 / (await clockTicksPerSecond);
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const task of tasks) {
    const stat = await readFile(`/proc/${pid}/task/${task}/stat`, "utf8").catch(() => undefined);
    if (stat === undefined) continue;
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const entry = out.get(name) ?? { userMs: 0, systemMs: 0 };
    entry.userMs += Number(fields[14 - 3]) * msPerTick;
    entry.systemMs += Number(fields[15 - 3]) * msPerTick;
    out.set(name, entry);
  }
  return out;
}

/** after − before, per thread name. */
export function threadCpuDelta(before: ThreadCpu, after: ThreadCpu): ThreadCpu {
  const out: ThreadCpu = new Map();
  for (const [name, { userMs, systemMs }] of after) {
    const earlier = before.get(name) ?? { userMs: 0, systemMs: 0 };
    out.set(name, { userMs: userMs - earlier.userMs, systemMs: systemMs - earlier.systemMs });
  }
  return out;
}
