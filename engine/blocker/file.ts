/**
 * FileObjectStore: objects as files in a local directory.
 *
 *   <dir>/objects/<segment>/<bucket>/<name>   segment: name up to its first dot ("+" if empty)
 *                                             bucket: 2 hex digits of FNV-1a(name)
 *   <dir>/objects/<segment>/<bucket>/+tmp.*   replacements being written (never listed)
 *   <dir>/locks/<name>                        flock(2) lock files with holder records
 *
 * e.g. b.3f…a9 → objects/b/5c/b.3f…a9, p.<vol>.<epoch>.<index> → objects/p/07/p.…
 *
 * Writes go through cached FileHandles with positional I/O; small page-cache reads and writes
 * are done synchronously (sync-io.ts, recent-pages.ts). Replacements (writeFull, copy)
 * and creations (createExclusive) are written to a temporary file, fdatasync'ed, then
 * renamed or linked into place, so neither a reader nor a crash ever sees half an object.
 * barrier() fdatasyncs the objects written in place since the last barrier and fsyncs the
 * directories that gained or lost entries.
 *
 * Cached handles assume no other process replaces (renames over) or removes an object we
 * hold open: true of content blocks (immutable) and private blocks and map entries (written
 * in place, by the holder of the volume lock only). Other names are opened per operation,
 * since writeFull from another process would leave us reading the replaced inode.
 */
import { randomBytes } from "node:crypto";
import { constants, readFileSync } from "node:fs";
import { copyFile, link, mkdir, open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { EngineError, isEngineError } from "../errors.ts";
import { FileHandleCache } from "./file-handles.ts";
import {
  errnoOf,
  forEachLimited,
  isSystemError,
  probeReflink,
  readAt,
  readdirIfPresent,
  syncDirectory,
  syncFile,
  writeAt,
  writeTemporary,
} from "./file-io.ts";
import { acquireFlock, probeFlockHolder } from "./flock.ts";
import { ObjectStoreBase, type LockHolder, type LockMode, type ObjectLock, type ObjectStat, type StoreCapabilities } from "./object-store.ts";
import { RecentPages } from "./recent-pages.ts";
import { coldReadGuard, readAllSync, syncReadAllowed, syncWriteAllowed, writeAllSync } from "./sync-io.ts";

/**
 * Open handles kept: a quarter of the process's soft RLIMIT_NOFILE (Node raises the soft
 * limit to the hard one at start-up), between 256 and 4096. 4096 handles cover a 16 GiB
 * working set of 4 MiB blocks; the other three quarters stay for sockets, lock files and
 * the barrier's extra descriptors. Measured (bench/RESULTS.md): random reads over a 2 GiB
 * volume run 1.7–2.9× faster with 1024 handles than with 256.
 */
export const fileHandleCacheMax = Math.min(4096, Math.max(256, Math.floor(openFilesSoftLimit() / 4)));

function openFilesSoftLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((text) => text.startsWith("Max open files"));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(soft) ? soft : 1024;
  } catch {
    return 1024; // not Linux, or no /proc: assume the common default
  }
}

/**
 * Buckets per segment, named by 2 hex digits. A 10 TiB store of 4 MiB blocks holds ~2.6 M
 * `b.` objects: ~10 k per bucket, which readdir and ext4/XFS hashed directories handle in
 * milliseconds, at the cost of only 256 directories per segment.
 */
export const fanoutBucketCount = 256;

/**
 * fdatasyncs in flight during a barrier: libuv runs 4 fs calls at once by default, so 16
 * keeps its pool and the device queue busy without one promise per dirty object.
 */
const barrierSyncConcurrency = 16;

/** Object names never contain "+" (see assertObjectName): it marks our own files and directories. */
const temporaryPrefix = "+tmp.";
const emptySegmentDirectory = "+";

/** Names whose handles are cached by default (see the header comment). */
export const handleCachePrefixesDefault: readonly string[] = ["b.", "p.", "e."];

export interface FileObjectStoreOptions {
  /** Open handles kept; default fileHandleCacheMax. */
  handleCacheMax?: number;
  /** Object name prefixes whose handles may be cached; default handleCachePrefixesDefault. */
  handleCachePrefixes?: readonly string[];
  /** Small page-cache reads and writes on the calling thread (sync-io.ts); default true. */
  syncSmallIo?: boolean;
}

interface Layout {
  rootDir: string;
  objectsDir: string;
  locksDir: string;
}

export class FileObjectStore extends ObjectStoreBase {
  readonly capabilities: StoreCapabilities;
  readonly uri: string;
  readonly #layout: Layout;
  readonly #handles: FileHandleCache;
  readonly #handleCachePrefixes: readonly string[];
  readonly #syncSmallIo: boolean;
  /** Pages read or written lately through cached handles: reads of them may go synchronously. */
  readonly #recent: RecentPages;
  /** Tags our temporary files: pid alone could repeat after a crash and restart. */
  readonly #temporaryTag = `${process.pid}.${randomBytes(4).toString("hex")}`;
  #temporarySequence = 0;
  /** Objects written in place since the last barrier started: they need fdatasync. */
  #dirtyObjects = new Set<string>();
  /** Directories that gained or lost entries since the last barrier started: they need fsync. */
  #dirtyDirectories = new Set<string>();
  /** Directories known to exist (#ensureDirectory). */
  readonly #existingDirectories = new Set<string>();
  /** The last barrier: barriers run one after another, so each covers all before it. */
  #barrierTail: Promise<void> = Promise.resolve();

  private constructor(layout: Layout, reflink: boolean, options: FileObjectStoreOptions) {
    super();
    this.#layout = layout;
    this.uri = `file:${layout.rootDir}`;
    this.capabilities = { persistent: true, serverSideCopy: reflink, crossProcessLocks: true };
    this.#handles = new FileHandleCache(options.handleCacheMax ?? fileHandleCacheMax);
    this.#handleCachePrefixes = options.handleCachePrefixes ?? handleCachePrefixesDefault;
    this.#syncSmallIo = options.syncSmallIo ?? true;
    this.#recent = new RecentPages(options.handleCacheMax ?? fileHandleCacheMax);
  }

  /** Opens the store in `dir`, creating the directory if absent. */
  static async open(dir: string, options: FileObjectStoreOptions = {}): Promise<FileObjectStore> {
    const rootDir = resolve(dir);
    const layout: Layout = { rootDir, objectsDir: join(rootDir, "objects"), locksDir: join(rootDir, "locks") };
    try {
      await mkdir(layout.objectsDir, { recursive: true });
      await mkdir(layout.locksDir, { recursive: true });
      return new FileObjectStore(layout, await probeReflink(rootDir, temporaryPrefix), options);
    } catch (error) {
      throw asEngineError(error, `open object store ${rootDir}`);
    }
  }

  /** Objects awaiting the next barrier's fdatasync (for tests). */
  get dirtyObjectCount(): number {
    return this.#dirtyObjects.size;
  }

  /** Open handles in the cache (for tests). */
  get cachedHandleCount(): number {
    return this.#handles.size;
  }

  /** Where object `name` lives (exported for tests and tools). */
  objectPath(name: string): string {
    return join(this.#layout.objectsDir, segmentDirectory(name), bucketDirectory(name), name);
  }

  protected async _readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    await this.#run(`read ${name}`, () => this.#useHandle(name, () => this.#openExisting(name), (handle) => this.#readAt(name, handle, offsetBytes, target)));
  }

  protected async _write(name: string, offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.#run(`write ${name}`, () => this.#useHandle(name, () => this.#openCreating(name), (handle) => this.#writeAt(name, handle, data, offsetBytes)));
    // Marked once complete: a barrier that started earlier may not have covered this write.
    this.#dirtyObjects.add(name);
  }

  /**
   * A small read on the calling thread when its pages were read or written lately, or while
   * first reads keep hitting the page cache (sync-io.ts); else through the pool.
   */
  async #readAt(name: string, handle: FileHandle, offsetBytes: number, target: Buffer): Promise<void> {
    const nowMs = performance.now();
    const tracked = this.#syncSmallIo && this.#cacheable(name);
    if (tracked && syncReadAllowed(target.length, nowMs)) {
      if (this.#recent.covers(name, offsetBytes, target.length, nowMs)) {
        readAllSync(handle.fd, target, offsetBytes);
        return;
      }
      if (coldReadGuard.allowed(nowMs)) {
        readAllSync(handle.fd, target, offsetBytes, coldReadGuard);
        this.#recent.touch(name, offsetBytes, target.length, performance.now());
        return;
      }
    }
    await readAt(handle, offsetBytes, target);
    if (tracked) this.#recent.touch(name, offsetBytes, target.length, performance.now());
  }

  /** A page-aligned write of at most 1 MiB on the calling thread (sync-io.ts), else through the pool. */
  async #writeAt(name: string, handle: FileHandle, data: Uint8Array, offsetBytes: number): Promise<void> {
    const tracked = this.#syncSmallIo && this.#cacheable(name);
    if (tracked && syncWriteAllowed(data.length, offsetBytes, performance.now())) writeAllSync(handle.fd, data, offsetBytes);
    else await writeAt(handle, data, offsetBytes);
    if (tracked) this.#recent.touch(name, offsetBytes, data.length, performance.now());
  }

  protected async _writeFull(name: string, data: Uint8Array, offsetBytes: number, atomic: boolean): Promise<void> {
    if (!atomic) {
      // In place: truncate, then write; durable at the next barrier like any write.
      await this.#run(`replace ${name}`, () =>
        this.#useHandle(name, () => this.#openCreating(name), async (handle) => {
          this.#recent.forget(name);
          await handle.truncate(0);
          await this.#writeAt(name, handle, data, offsetBytes);
        }),
      );
      this.#dirtyObjects.add(name);
      return;
    }
    const path = this.objectPath(name);
    await this.#run(`replace ${name}`, () =>
      this.#withTemporary(path, async (temporary) => {
        await writeTemporary(temporary, data, offsetBytes);
        await rename(temporary, path);
      }),
    );
    this.#replaced(name, path);
  }

  protected async _createExclusive(name: string, data: Uint8Array): Promise<boolean> {
    const path = this.objectPath(name);
    // Taken already (a deduplicated block: every sync client's re-upload): one stat instead
    // of writing, fdatasyncing and linking a copy only for link() to refuse it.
    if (await this.#exists(name, path)) return false;
    const created = await this.#run(`create ${name}`, () =>
      this.#withTemporary(path, async (temporary) => {
        await writeTemporary(temporary, data, 0);
        try {
          // link() fails with EEXIST if the name is taken, atomically, across processes.
          await link(temporary, path);
          return true;
        } catch (error) {
          if (errnoOf(error) === "EEXIST") return false;
          throw error;
        }
      }),
    );
    if (created) this.#dirtyDirectories.add(dirname(path));
    return created;
  }

  protected async _copy(source: string, target: string, atomic: boolean): Promise<void> {
    const sourcePath = this.objectPath(source);
    const targetPath = this.objectPath(target);
    if (!atomic) {
      // copyFile truncates and rewrites the target's inode in place (a cached handle stays
      // valid), cloning extents where the file system can; durable at the next barrier.
      this.#recent.forget(target);
      await this.#run(`copy ${source} to ${target}`, async () => {
        await this.#ensureDirectory(dirname(targetPath));
        await copyFile(sourcePath, targetPath, constants.COPYFILE_FICLONE).catch((error: unknown) => {
          throw errnoOf(error) === "ENOENT" ? notFound(source) : error;
        });
      });
      this.#dirtyObjects.add(target);
      this.#dirtyDirectories.add(dirname(targetPath));
      return;
    }
    await this.#run(`copy ${source} to ${target}`, () =>
      this.#withTemporary(targetPath, async (temporary) => {
        await copyFile(sourcePath, temporary, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL).catch((error: unknown) => {
          throw errnoOf(error) === "ENOENT" ? notFound(source) : error;
        });
        await syncFile(temporary);
        await rename(temporary, targetPath);
      }),
    );
    this.#replaced(target, targetPath);
  }

  async #exists(name: string, path: string): Promise<boolean> {
    return this.#run(`stat ${name}`, async () => {
      try {
        await stat(path);
        return true;
      } catch (error) {
        if (errnoOf(error) === "ENOENT") return false;
        throw error;
      }
    });
  }

  protected async _stat(name: string): Promise<ObjectStat | undefined> {
    return this.#run(`stat ${name}`, async () => {
      try {
        const stats = await stat(this.objectPath(name));
        return { sizeBytes: stats.size, mtimeMs: stats.mtimeMs };
      } catch (error) {
        if (errnoOf(error) === "ENOENT") return undefined;
        throw error;
      }
    });
  }

  protected async _remove(name: string): Promise<boolean> {
    const path = this.objectPath(name);
    return this.#run(`remove ${name}`, async () => {
      try {
        await unlink(path);
      } catch (error) {
        if (errnoOf(error) === "ENOENT") return false;
        throw error;
      }
      this.#handles.invalidate(name);
      this.#recent.forget(name);
      this.#dirtyDirectories.add(dirname(path));
      return true;
    });
  }

  /** Walks only the prefix's segment when the prefix names one (`b.` never scans `p.`). */
  protected async *_list(prefix: string): AsyncIterable<string> {
    const { objectsDir } = this.#layout;
    const segments = prefix.includes(".") ? [segmentDirectory(prefix)] : await this.#run("list", () => readdirIfPresent(objectsDir));
    for (const segment of segments) {
      const buckets = await this.#run("list", () => readdirIfPresent(join(objectsDir, segment)));
      for (const bucket of buckets) {
        const entries = await this.#run("list", () => readdirIfPresent(join(objectsDir, segment, bucket)));
        for (const entry of entries) if (entry.startsWith(prefix) && !entry.startsWith(temporaryPrefix)) yield entry;
      }
    }
  }

  protected async _barrier(): Promise<void> {
    const barrier = this.#barrierTail.then(() => this.#syncDirty());
    this.#barrierTail = barrier.catch(() => {});
    await barrier;
  }

  protected async _lock(name: string, owner: string, _leaseMs: number, mode: LockMode): Promise<ObjectLock> {
    // flock needs no lease: the kernel drops it when we die (see flock.ts).
    return this.#run(`lock ${name}`, () => acquireFlock(join(this.#layout.locksDir, name), name, owner, mode));
  }

  protected async _lockHolder(name: string): Promise<LockHolder | undefined> {
    return this.#run(`lock holder of ${name}`, () => probeFlockHolder(join(this.#layout.locksDir, name)));
  }

  /**
   * Closes every cached handle (busy ones when their operation ends). Locks are not
   * released: a caller holding one keeps it until it calls release() or exits.
   */
  protected async _close(): Promise<void> {
    await this.#handles.close();
  }

  #cacheable(name: string): boolean {
    return this.#handleCachePrefixes.some((prefix) => name.startsWith(prefix));
  }

  #useHandle<T>(name: string, open: () => Promise<FileHandle>, action: (handle: FileHandle) => Promise<T>): Promise<T> {
    return this.#handles.use(name, open, action, this.#cacheable(name));
  }

  async #openExisting(name: string): Promise<FileHandle> {
    try {
      return await open(this.objectPath(name), constants.O_RDWR);
    } catch (error) {
      throw errnoOf(error) === "ENOENT" ? notFound(name) : error;
    }
  }

  /** Opens `name` for writing, creating it (and its directories) if absent. */
  async #openCreating(name: string): Promise<FileHandle> {
    const path = this.objectPath(name);
    try {
      return await open(path, constants.O_RDWR);
    } catch (error) {
      if (errnoOf(error) !== "ENOENT") throw error;
    }
    await this.#ensureDirectory(dirname(path));
    const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    this.#dirtyDirectories.add(dirname(path));
    return handle;
  }

  /** Creates `dir` and its missing parents; each directory that gained an entry is dirty. */
  async #ensureDirectory(dir: string): Promise<void> {
    // The store never removes a directory, so one seen is there for good: no mkdir (and its
    // EEXIST) on every block written. Bounded by the fan-out (segments × buckets).
    if (this.#existingDirectories.has(dir)) return;
    const firstCreated = await mkdir(dir, { recursive: true });
    this.#existingDirectories.add(dir);
    if (firstCreated === undefined) return;
    for (let created = dir; created !== dirname(firstCreated); created = dirname(created)) this.#dirtyDirectories.add(created);
    this.#dirtyDirectories.add(dirname(firstCreated));
  }

  /** Runs `action` with a fresh temporary path beside `path`, removed afterwards whatever happens. */
  async #withTemporary<T>(path: string, action: (temporary: string) => Promise<T>): Promise<T> {
    await this.#ensureDirectory(dirname(path));
    const temporary = join(dirname(path), `${temporaryPrefix}${this.#temporaryTag}.${this.#temporarySequence++}`);
    try {
      return await action(temporary);
    } finally {
      // After a rename the temporary name is gone already; after a link it must go.
      await unlink(temporary).catch((error: unknown) => {
        if (errnoOf(error) !== "ENOENT") throw error;
      });
    }
  }

  /** `name` now names a new inode at `path`: forget the old one's handle, persist the entry at the next barrier. */
  #replaced(name: string, path: string): void {
    this.#handles.invalidate(name);
    this.#recent.forget(name);
    this.#dirtyDirectories.add(dirname(path));
  }

  async #syncDirty(): Promise<void> {
    const objects = this.#dirtyObjects;
    const directories = this.#dirtyDirectories;
    this.#dirtyObjects = new Set();
    this.#dirtyDirectories = new Set();
    // On failure the sets are not restored: after a failed fdatasync the kernel may already
    // have dropped the dirty pages (PostgreSQL's "fsyncgate"), so a retry that succeeds would
    // prove nothing. The caller gets EIO and must treat writes since the last good barrier as lost.
    await this.#run("barrier", async () => {
      // Data before the directory entries naming it: after a crash, a name never points at unwritten data.
      await forEachLimited([...objects], barrierSyncConcurrency, (name) => this.#syncObject(name));
      await forEachLimited([...directories], barrierSyncConcurrency, syncDirectory);
    });
  }

  async #syncObject(name: string): Promise<void> {
    try {
      // fdatasync through any descriptor of the inode flushes all of its dirty pages.
      await this.#useHandle(name, () => this.#openExisting(name), (handle) => handle.datasync());
    } catch (error) {
      if (!isEngineError(error, "ENOT_FOUND")) throw error; // removed since: nothing to persist
    }
  }

  async #run<T>(action: string, body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      throw asEngineError(error, `${action} in ${this.uri}`);
    }
  }
}

function segmentDirectory(name: string): string {
  const dot = name.indexOf(".");
  const segment = dot === -1 ? name : name.slice(0, dot);
  return segment === "" ? emptySegmentDirectory : segment;
}

/** FNV-1a (32-bit) of the name, folded to a bucket: cheap, and spreads `b.<hex>` and counters alike. */
function bucketDirectory(name: string): string {
  let hash = 0x811c9dc5;
  for (let index = 0; index < name.length; index++) hash = Math.imul(hash ^ name.charCodeAt(index), 0x01000193);
  return ((hash >>> 0) % fanoutBucketCount).toString(16).padStart(2, "0");
}

function notFound(name: string): EngineError {
  return new EngineError("ENOT_FOUND", `object ${name} does not exist`);
}

/** EngineErrors pass through; a system error (ENOSPC, EIO, EACCES…) becomes EIO. */
function asEngineError(error: unknown, action: string): unknown {
  if (!isSystemError(error)) return error;
  return new EngineError("EIO", `${action}: ${error.message}`, { errno: error.code }, { cause: error });
}
