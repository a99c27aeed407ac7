/**
 * The NBD servers under test, one `NbdTarget` each, every one with its own directory, image
 * (or store) and unix socket: two qemu-nbd processes cannot share a read-write image
 * (qemu's image locking), and nothing may be shared between the sides anyway.
 *
 *   target          image                                   copy-on-write state per job
 *   okeanos         file store, volume prefilled over NBD    —
 *   okeanos-cow     the same, snapshotted before every job   `okeanos volume snapshot`
 *   qemu-nbd raw    raw file, prefilled over NBD             —
 *   qemu-nbd qcow2  qcow2 overlay on a raw base that holds   a fresh overlay before every job
 *                   the prefill
 *   nbdkit file     raw file, prefilled over NBD             —
 *
 * The copy-on-write targets start every job from a fresh snapshot / overlay, so their write
 * rows include the first write to each block (okeanos: a 4 MiB block copied up) or cluster
 * (qcow2: a 64 KiB cluster allocated and filled from the base), and their read rows read
 * through to the shared data. Server command lines follow ../shared/notes/nbd.md.
 */
import { rm, writeFile, truncate } from "node:fs/promises";
import { join } from "node:path";
import { nbdUnixUri, prefill } from "./fio.ts";
import { run, ServerProcess } from "./processes.ts";

export interface TargetLayout {
  /** This target's own directory (its image or store, socket and logs). */
  dir: string;
  exportSizeBytes: number;
  workingSetBytes: number;
}

/** sockaddr_un.sun_path is 108 bytes including the NUL. */
const unixSocketPathMaxBytes = 107;
/** How long a server may take to shut down after SIGTERM (okeanos flushes and closes). */
const stopGraceMs = 60_000;

export abstract class NbdTarget {
  abstract readonly name: string;
  /** True for the targets whose every job starts from a fresh snapshot / overlay. */
  abstract readonly copyOnWrite: boolean;
  readonly layout: TargetLayout;
  readonly socketPath: string;
  #server: ServerProcess | undefined;
  #peakRssBytes = 0;
  #starts = 0;

  constructor(layout: TargetLayout) {
    this.layout = layout;
    this.socketPath = join(layout.dir, "nbd.sock");
    if (Buffer.byteLength(this.socketPath) > unixSocketPathMaxBytes) {
      throw new Error(`unix socket path ${this.socketPath} is longer than ${unixSocketPathMaxBytes} bytes: set a shorter OKEANOS_BENCH_DIR`);
    }
  }

  /** The export name in the URI ("" for qemu-nbd's default export). */
  protected get exportName(): string {
    return "";
  }

  get uri(): string {
    return nbdUnixUri(this.exportName, this.socketPath);
  }

  /** Creates the image, starts the server, writes the working set. Leaves the server running. */
  abstract setUp(): Promise<void>;

  /** The command line of the server as it runs during the jobs. */
  protected abstract serverCommand(): { command: string; args: string[] };

  /** Called before every job: copy-on-write targets take a fresh snapshot / overlay here. */
  async beforeJob(): Promise<void> {
    if (this.#server === undefined) await this.start();
  }

  async start(): Promise<void> {
    const { command, args } = this.serverCommand();
    const server = new ServerProcess(command, args, join(this.layout.dir, `server-${++this.#starts}.log`));
    this.#server = server;
    await server.waitUntilServing(this.socketPath);
  }

  /** Stops the server (SIGTERM, graceful); keeps its peak RSS. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    const exit = await server.stop(stopGraceMs);
    this.#peakRssBytes = Math.max(this.#peakRssBytes, server.peakRssBytes);
    if (exit.signal === "SIGKILL") throw new Error(`${this.name} did not stop within ${stopGraceMs} ms of SIGTERM:\n${await server.logTail()}`);
    const summary = (await server.logTail()).split("\n").find((line) => line.includes("fast-path I/O"));
    if (summary !== undefined) this.serverSummaries.push(summary.trim());
  }

  /** What the server said about itself when it stopped (okeanos: its fast-path counters). */
  readonly serverSummaries: string[] = [];

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Highest VmHWM of any server process of this target so far (bytes). */
  async peakRssBytes(): Promise<number> {
    const current = this.#server === undefined ? 0 : await this.#server.sampleRss();
    this.#peakRssBytes = Math.max(this.#peakRssBytes, current);
    return this.#peakRssBytes;
  }

  /** CPU time used by the running server so far (ms, all threads), or undefined. */
  async cpuMs(): Promise<number | undefined> {
    return this.#server?.cpuMs();
  }

  /** The running server, for callers that need its pid. */
  get server(): ServerProcess | undefined {
    return this.#server;
  }

  protected prefillOutputPath(): string {
    return join(this.layout.dir, "prefill.json");
  }
}

// ── peers ──────────────────────────────────────────────────────────────────

/** `qemu-nbd -f raw -t -e 8 --cache=writeback` on a raw file: nbd.md's "qwb". */
export class QemuRawTarget extends NbdTarget {
  readonly name = "qemu-nbd raw";
  readonly copyOnWrite = false;
  readonly imagePath = join(this.layout.dir, "disk.raw");

  async setUp(): Promise<void> {
    await createSparseFile(this.imagePath, this.layout.exportSizeBytes);
    await this.start();
    await prefill(this.uri, this.layout.workingSetBytes, this.prefillOutputPath());
  }

  protected serverCommand(): { command: string; args: string[] } {
    return { command: "qemu-nbd", args: qemuNbdArgs("raw", this.socketPath, this.imagePath) };
  }
}

/** `nbdkit -f -U SOCK file file=disk.img`: nbd.md's "kfile", the fastest peer there. */
export class NbdkitFileTarget extends NbdTarget {
  readonly name = "nbdkit file";
  readonly copyOnWrite = false;
  readonly imagePath = join(this.layout.dir, "disk.img");

  async setUp(): Promise<void> {
    await createSparseFile(this.imagePath, this.layout.exportSizeBytes);
    await this.start();
    await prefill(this.uri, this.layout.workingSetBytes, this.prefillOutputPath());
  }

  protected serverCommand(): { command: string; args: string[] } {
    return { command: "nbdkit", args: ["-f", "-U", this.socketPath, "file", `file=${this.imagePath}`] };
  }
}

/**
 * qemu-nbd on a qcow2 overlay over a raw base that holds the prefill: the copy-on-write
 * analogue of okeanos-cow. The base is prefilled through a temporary `qemu-nbd -f raw`;
 * every job then gets a fresh overlay, so its writes allocate clusters and its reads go
 * through to the base.
 */
export class QemuQcow2Target extends NbdTarget {
  readonly name = "qemu-nbd qcow2";
  readonly copyOnWrite = true;
  readonly basePath = join(this.layout.dir, "base.raw");
  readonly overlayPath = join(this.layout.dir, "overlay.qcow2");

  async setUp(): Promise<void> {
    await createSparseFile(this.basePath, this.layout.exportSizeBytes);
    const baseServer = new ServerProcess("qemu-nbd", qemuNbdArgs("raw", this.socketPath, this.basePath), join(this.layout.dir, "base-server.log"));
    try {
      await baseServer.waitUntilServing(this.socketPath);
      await prefill(this.uri, this.layout.workingSetBytes, this.prefillOutputPath());
    } finally {
      await baseServer.stop(stopGraceMs);
    }
    await this.beforeJob();
  }

  override async beforeJob(): Promise<void> {
    await this.stop();
    await rm(this.overlayPath, { force: true });
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", this.basePath, "-F", "raw", this.overlayPath]);
    await this.start();
  }

  protected serverCommand(): { command: string; args: string[] } {
    return { command: "qemu-nbd", args: qemuNbdArgs("qcow2", this.socketPath, this.overlayPath) };
  }
}

function qemuNbdArgs(format: "raw" | "qcow2", socketPath: string, imagePath: string): string[] {
  // -t: keep serving after a client disconnects; -e 8: concurrent clients (and multi-conn).
  return ["-f", format, "-t", "-e", "8", "--cache=writeback", "-k", socketPath, imagePath];
}

/** A sparse raw image, like `qemu-img create -f raw`. */
async function createSparseFile(path: string, sizeBytes: number): Promise<void> {
  await writeFile(path, "");
  await truncate(path, sizeBytes);
}
