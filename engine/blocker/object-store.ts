/**
 * The object-store interface every backend implements (file, memory, later rados).
 *
 * Public methods on ObjectStoreBase validate names and ranges once; backends implement
 * the protected `_…` methods and contain no validation (abstract-level's put → _put).
 *
 * Semantics every backend must honour (checked by conformance.ts on each one):
 * - read past the end of an object returns zeros; reading a missing object is ENOT_FOUND.
 * - write creates the object if absent and extends it with zeros as needed.
 * - readInto fills the caller's buffer (no allocation per request on the I/O path).
 * - writeFull replaces the whole object: afterwards it reads as `offsetBytes` zeros
 *   followed by `data` (nothing of the old content survives). By default the replacement
 *   is atomic and durable before it is visible (see ReplaceOptions).
 * - createExclusive writes only if the name is free and says whether it did.
 * - copy replaces `target` with the content of `source`.
 * - barrier makes every write acknowledged before it durable (fdatasync / RADOS ack).
 * - lock is exclusive between processes, names its holder when refused, and is
 *   released when the holder dies (file: flock; rados: lease expiry). A lock taken in
 *   "shared" mode coexists with other shared holds of the same name and excludes every
 *   exclusive one (file: flock LOCK_SH; rados: cls_lock LOCK_SHARED); a shared hold
 *   writes no holder record, so lockHolder names only exclusive holders.
 */
import { EngineError } from "../errors.ts";

export interface ObjectStat {
  sizeBytes: number;
  /** Last modification, milliseconds since the epoch: gc's grace period is measured on it. */
  mtimeMs: number;
}

/** What a backend can do; callers derive behaviour from these, never from instanceof. */
export interface StoreCapabilities {
  /** Data survives the process (false only for the memory backend). */
  persistent: boolean;
  /** copy() runs inside the store without moving bytes through this process. */
  serverSideCopy: boolean;
  /** Locks exclude other processes (not only other callers in this process). */
  crossProcessLocks: boolean;
}

/** Who holds a lock, as recorded by the holder when it took it. */
export interface LockHolder {
  owner: string;
  host: string;
  pid: number;
  acquiredAtMs: number;
}

export interface ObjectLock {
  readonly name: string;
  readonly holder: LockHolder;
  /** Extend the lease; throws if the lock was lost (the caller must stop writing). */
  renew(): Promise<void>;
  release(): Promise<void>;
}

/** exclusive: one holder; shared: any number of shared holders and no exclusive one. */
export type LockMode = "exclusive" | "shared";

/** How writeFull and copy replace an object. */
export interface ReplaceOptions {
  /**
   * true (default): a crash leaves the old object or the new one, never a mix, and the new
   * one is durable before anyone can see it — for metadata and shared blocks. false: the
   * caller needs neither, because nothing durable names the object yet (a private block
   * being copied up): it may be replaced in place and becomes durable at the next barrier,
   * which saves a device flush per call on the file backend.
   */
  atomic?: boolean;
}

export interface ObjectStore {
  readonly capabilities: StoreCapabilities;
  /** A human-readable location, e.g. `file:/srv/okeanos`. */
  readonly uri: string;
  read(name: string, offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** Reads `target.length` bytes at `offsetBytes` into `target`. */
  readInto(name: string, offsetBytes: number, target: Buffer): Promise<void>;
  write(name: string, offsetBytes: number, data: Uint8Array): Promise<void>;
  writeFull(name: string, data: Uint8Array, offsetBytes?: number, options?: ReplaceOptions): Promise<void>;
  createExclusive(name: string, data: Uint8Array): Promise<boolean>;
  copy(source: string, target: string, options?: ReplaceOptions): Promise<void>;
  stat(name: string): Promise<ObjectStat | undefined>;
  /** Removes the object; says whether it existed. */
  remove(name: string): Promise<boolean>;
  /** Names starting with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  barrier(): Promise<void>;
  /** Never waits: a conflicting hold is EVOLUME_LOCKED at once (store-lock.ts waits and retries). */
  lock(name: string, owner: string, leaseMs: number, mode?: LockMode): Promise<ObjectLock>;
  /** The current holder of a lock, if any (for error messages and `volume info`). */
  lockHolder(name: string): Promise<LockHolder | undefined>;
  /**
   * Only where a lock can outlive its holder (rados: a lease): takes the lock away from
   * whoever holds it, fencing the holder so it cannot write again (`volume unlock --force`).
   * Says who held it. Absent where locks end with their holder's process (file: flock).
   */
  breakLock?(name: string): Promise<LockHolder | undefined>;
  close(): Promise<void>;
}

/**
 * Object names are short ASCII words: they become file names and RADOS object names.
 * RADOS' default osd_max_object_name_len is 2048, but file systems allow 255 bytes per
 * component; 200 leaves room for backend suffixes.
 */
export const objectNameLengthMax = 200;
const objectNamePattern = /^[A-Za-z0-9._~%-]+$/;

/** Largest single read or write: 64 MiB, ample for any block size we allow (≤ 32 MiB). */
export const ioLengthMaxBytes = 64 * 1024 * 1024;

export function assertObjectName(name: string): void {
  if (name.length === 0 || name.length > objectNameLengthMax || !objectNamePattern.test(name) || name === "." || name === "..") {
    throw new EngineError("EINVALID", `invalid object name ${JSON.stringify(name)}`);
  }
}

function assertRange(offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
    throw new EngineError("EINVALID", `invalid offset ${offsetBytes}`);
  }
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes > ioLengthMaxBytes) {
    throw new EngineError("EINVALID", `invalid length ${lengthBytes}`);
  }
}

export abstract class ObjectStoreBase implements ObjectStore {
  abstract readonly capabilities: StoreCapabilities;
  abstract readonly uri: string;
  #closed = false;

  async read(name: string, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    assertRange(offsetBytes, lengthBytes);
    const data = Buffer.allocUnsafe(lengthBytes);
    await this.readInto(name, offsetBytes, data);
    return data;
  }

  async readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    this.#assertOpen();
    assertObjectName(name);
    assertRange(offsetBytes, target.length);
    await this._readInto(name, offsetBytes, target);
  }

  async write(name: string, offsetBytes: number, data: Uint8Array): Promise<void> {
    this.#assertOpen();
    assertObjectName(name);
    assertRange(offsetBytes, data.length);
    await this._write(name, offsetBytes, data);
  }

  async writeFull(name: string, data: Uint8Array, offsetBytes = 0, options: ReplaceOptions = {}): Promise<void> {
    this.#assertOpen();
    assertObjectName(name);
    assertRange(offsetBytes, data.length);
    await this._writeFull(name, data, offsetBytes, options.atomic !== false);
  }

  async createExclusive(name: string, data: Uint8Array): Promise<boolean> {
    this.#assertOpen();
    assertObjectName(name);
    assertRange(0, data.length);
    return this._createExclusive(name, data);
  }

  async copy(source: string, target: string, options: ReplaceOptions = {}): Promise<void> {
    this.#assertOpen();
    assertObjectName(source);
    assertObjectName(target);
    if (source === target) throw new EngineError("EINVALID", `copy of ${source} onto itself`);
    await this._copy(source, target, options.atomic !== false);
  }

  async stat(name: string): Promise<ObjectStat | undefined> {
    this.#assertOpen();
    assertObjectName(name);
    return this._stat(name);
  }

  async remove(name: string): Promise<boolean> {
    this.#assertOpen();
    assertObjectName(name);
    return this._remove(name);
  }

  list(prefix: string): AsyncIterable<string> {
    this.#assertOpen();
    if (prefix !== "") assertObjectName(prefix);
    return this._list(prefix);
  }

  async barrier(): Promise<void> {
    this.#assertOpen();
    await this._barrier();
  }

  async lock(name: string, owner: string, leaseMs: number, mode: LockMode = "exclusive"): Promise<ObjectLock> {
    this.#assertOpen();
    assertObjectName(name);
    if (!Number.isSafeInteger(leaseMs) || leaseMs <= 0) throw new EngineError("EINVALID", `invalid lease ${leaseMs} ms`);
    if (mode !== "exclusive" && mode !== "shared") throw new EngineError("EINVALID", `invalid lock mode ${String(mode)}`);
    return this._lock(name, owner, leaseMs, mode);
  }

  async lockHolder(name: string): Promise<LockHolder | undefined> {
    this.#assertOpen();
    assertObjectName(name);
    return this._lockHolder(name);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this._close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new EngineError("ECLOSED", `object store ${this.uri} is closed`);
  }

  /** Fills all of `target`; bytes past the end of the object are zeros. */
  protected abstract _readInto(name: string, offsetBytes: number, target: Buffer): Promise<void>;
  protected abstract _write(name: string, offsetBytes: number, data: Uint8Array): Promise<void>;
  protected abstract _writeFull(name: string, data: Uint8Array, offsetBytes: number, atomic: boolean): Promise<void>;
  protected abstract _createExclusive(name: string, data: Uint8Array): Promise<boolean>;
  protected abstract _copy(source: string, target: string, atomic: boolean): Promise<void>;
  protected abstract _stat(name: string): Promise<ObjectStat | undefined>;
  protected abstract _remove(name: string): Promise<boolean>;
  protected abstract _list(prefix: string): AsyncIterable<string>;
  protected abstract _barrier(): Promise<void>;
  protected abstract _lock(name: string, owner: string, leaseMs: number, mode: LockMode): Promise<ObjectLock>;
  protected abstract _lockHolder(name: string): Promise<LockHolder | undefined>;
  protected abstract _close(): Promise<void>;
}
