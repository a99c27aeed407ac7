/**
 * RadosObjectStore: objects as RADOS objects in one pool (and optionally one namespace),
 * through librados' async C API (native.ts, native/rados.cc).
 *
 *   <name>                      the object itself, same name
 *   +index, +index.<seg>.<n>    listing indexes in omap (listing-index.ts)
 *   +lock.<name>                lease locks (lease-lock.ts)
 *
 * How each operation maps onto RADOS (every op below is one atomic RADOS op):
 * - read: rados_aio_read into the caller's buffer; the tail past the object is zero-filled.
 * - write: [assert_exists, write] — the common case, one op. If the object is absent: add
 *   it to the index, then [write] (which creates it). An empty write (which only extends):
 *   [stat], then [assert_version, truncate] (#extendTo says why).
 * - writeFull: index, then [write_full] or [write_full ∅, write at offset] (or truncate for
 *   empty data). RADOS applies an op whole and acks it once it is durable on every replica,
 *   so every replacement is atomic, whatever `atomic` says.
 * - createExclusive: index, then [create exclusive, write_full] — EEXIST means taken.
 * - copy: [stat, read] of the source (read+write through this process: the C API has no
 *   copy_from), then index, then [write_full] of the target.
 * - remove: rados_aio_remove, then drop the index entry.
 * - barrier: every RADOS write is durable when acknowledged, so a barrier only waits for
 *   the mutations issued before it, then rados_aio_flush_async.
 * Mutations of one name issued in order reach RADOS in that order (FIFO in-flight gate,
 * `#gated` while an index update runs first), and RADOS keeps per-object order.
 */
import { EngineError, isEngineError } from "../../errors.ts";
import { ObjectStoreBase, type LockHolder, type LockMode, type ObjectLock, type ObjectStat, type StoreCapabilities } from "../object-store.ts";
import { InFlightLimiter } from "./in-flight.ts";
import { acquireLeaseLock, breakLeaseLock, eshutdown, readLockHolder, type LockContext } from "./lease-lock.ts";
import { ListingIndex } from "./listing-index.ts";
import { isRadosError, loadRadosAddon, type RadosCluster, type RadosPool, type ReadStep, type StatResult, type WriteStep } from "./native.ts";
import { radosErrorToEngineError } from "./rados-errors.ts";

/**
 * Operations in flight by default. librados allows 1024 (objecter_inflight_ops); one OSD
 * on two cores is saturated by far fewer, and 4 KiB reads peak at 32–64 in flight
 * (../shared/notes/ceph.md §2), so 128 keeps the pipeline full without queueing inside
 * librados.
 */
export const inFlightOpsDefault = 128;

/**
 * Share of librados' objecter_inflight_op_bytes (100 MiB by default) our data may take:
 * above it librados blocks the submitting thread — the event loop. 90 % leaves room for
 * index and lock ops, which count a few bytes each.
 */
const inFlightBytesShare = 0.9;

/**
 * glibc's malloc settings for a process that talks to RADOS. librados' C API copies every
 * write's data into a fresh bufferlist; with glibc's defaults, a 4 MiB one is mmap'ed, or
 * carved from a heap that is trimmed again on free, so each write pays ~1,000 page faults:
 * 4–11 ms of client CPU per 4 MiB write op (a loop of write ops at QD8 on the micro
 * cluster), 1.5 ms with allocations this size kept in the heap. The cost: up to
 * trimThreshold of freed memory kept per heap instead of returned to the kernel. Not applied
 * when the environment sets glibc's own MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_
 * (the operator chose), or OKEANOS_RADOS_MALLOC_TUNING=0.
 */
export const mallocTuning = { mmapThresholdBytes: 64 * 1024 * 1024, trimThresholdBytes: 128 * 1024 * 1024 };

let mallocTuned = false;

function tuneMallocOnce(addon: ReturnType<typeof loadRadosAddon>): void {
  if (mallocTuned) return;
  mallocTuned = true;
  const env = process.env;
  if (env["OKEANOS_RADOS_MALLOC_TUNING"] === "0" || env["MALLOC_MMAP_THRESHOLD_"] !== undefined || env["MALLOC_TRIM_THRESHOLD_"] !== undefined) return;
  addon.tuneMalloc?.(mallocTuning.mmapThresholdBytes, mallocTuning.trimThresholdBytes);
}

/** Connect timeout: librados waits 300 s for the monitors by default, too long for a CLI. */
const mountTimeoutSecondsDefault = 30;

const enoent = 2;
const eexist = 17;
/** assertVersion's failures: the object is newer, or older, than the version asserted. */
const erange = 34;
const eoverflow = 75;

/** Rounds of stat + conditional truncate an empty write makes before giving up. */
const extendAttemptsMax = 100;

export interface RadosStoreOptions {
  pool: string;
  /** A RADOS namespace inside the pool: several stores can share one pool. Default: none. */
  namespace?: string;
  /** ceph.conf path (default $CEPH_CONF, then Ceph's search path). */
  cephConf?: string;
  /** Client id without `client.` (default $CEPH_ID, then admin). */
  cephId?: string;
  keyring?: string;
  /** Extra Ceph settings for this client, e.g. { objecter_inflight_op_bytes: "209715200" }. */
  settings?: Record<string, string>;
  /** Operations in flight (default inFlightOpsDefault). */
  inFlightOpsMax?: number;
  /** Bytes in flight (default 90 % of objecter_inflight_op_bytes); never above that. */
  inFlightBytesMax?: number;
  /** Blocklist a lock holder whose lease ran out before taking over its lock (default true). */
  fenceExpiredHolders?: boolean;
  /**
   * The lease of every lock taken through this store, in place of the one the caller asks
   * for (the engine's volumeLeaseMs, 30 s): how long a dead or hung writer keeps its volume
   * before another client may take it over. Tests use a few seconds.
   */
  lockLeaseMs?: number;
}

export class RadosObjectStore extends ObjectStoreBase {
  readonly capabilities: StoreCapabilities = { persistent: true, serverSideCopy: false, crossProcessLocks: true };
  readonly uri: string;
  readonly #cluster: RadosCluster;
  readonly #pool: RadosPool;
  readonly #limiter: InFlightLimiter;
  readonly #index: ListingIndex;
  readonly #locks: LockContext;
  readonly #lockLeaseMs: number | undefined;
  /**
   * Set once an op failed with ESHUTDOWN: this client was blocklisted (fenced), and every op
   * it sends from now on fails. Checked by barrier(), which otherwise completes locally
   * (rados_aio_flush waits for our own ops only) and would report a flush as done.
   */
  #blocklisted: EngineError | undefined;
  /** Mutations not yet settled: a barrier waits for those issued before it. */
  readonly #mutations = new Set<Promise<unknown>>();
  /** Per name: opens once a multi-step operation has queued its last op (see #gated). */
  readonly #gates = new Map<string, Promise<void>>();
  /** Per name: in-place writes not yet settled (see #gated). */
  readonly #inPlaceWrites = new Map<string, Set<Promise<unknown>>>();

  private constructor(uri: string, cluster: RadosCluster, pool: RadosPool, limiter: InFlightLimiter, options: RadosStoreOptions) {
    super();
    this.uri = uri;
    this.#cluster = cluster;
    this.#pool = pool;
    this.#limiter = limiter;
    this.#index = new ListingIndex(pool, limiter);
    this.#locks = {
      cluster,
      pool,
      limiter,
      fence: options.fenceExpiredHolders !== false,
      held: new Set(),
      onBlocklisted: (error) => this.#noteBlocklisted(error, "renew a lock"),
    };
    this.#lockLeaseMs = options.lockLeaseMs;
  }

  /** Connects to the cluster and opens the pool: ENO_STORE if the addon or the pool is missing. */
  static async open(options: RadosStoreOptions): Promise<RadosObjectStore> {
    const addon = loadRadosAddon();
    tuneMallocOnce(addon);
    const lease = options.lockLeaseMs;
    if (lease !== undefined && (!Number.isSafeInteger(lease) || lease <= 0)) throw new EngineError("EINVALID", `invalid lock lease ${lease} ms`);
    const namespace = options.namespace ?? "";
    const uri = `rados:${options.pool}${namespace === "" ? "" : `/${namespace}`}`;
    const settings = { client_mount_timeout: String(mountTimeoutSecondsDefault), ...options.settings };
    const conf = options.cephConf ?? process.env["CEPH_CONF"];
    const id = options.cephId ?? process.env["CEPH_ID"];
    let cluster: RadosCluster;
    try {
      cluster = await addon.connect({ conf, id, keyring: options.keyring, settings });
    } catch (error) {
      throw radosErrorToEngineError(error, `connect to Ceph for ${uri} (ceph.conf ${conf ?? "from Ceph's default search path"}, client.${id ?? "admin"})`);
    }
    let pool: RadosPool;
    try {
      pool = await cluster.openPool(options.pool, namespace);
    } catch (error) {
      await cluster.shutdown();
      if (isRadosError(error, enoent)) throw new EngineError("ENO_STORE", `no pool ${options.pool} in the Ceph cluster: create it first (ceph osd pool create ${options.pool})`);
      throw radosErrorToEngineError(error, `open pool ${options.pool}`);
    }
    const librados = Number(cluster.confGet("objecter_inflight_op_bytes"));
    const bytesMax = Math.min(options.inFlightBytesMax ?? Number.POSITIVE_INFINITY, Math.floor(librados * inFlightBytesShare));
    const limiter = new InFlightLimiter(options.inFlightOpsMax ?? inFlightOpsDefault, bytesMax);
    return new RadosObjectStore(uri, cluster, pool, limiter, options);
  }

  /** The in-flight gate (for tests and stats). */
  get inFlight(): InFlightLimiter {
    return this.#limiter;
  }

  /**
   * Breaks lock `name` whoever holds it, fencing the holder first (for `volume unlock
   * --force`: only when its holder is known to be gone or must be stopped). Returns who held it.
   */
  async breakLock(name: string): Promise<LockHolder | undefined> {
    return this.#run(`break lock ${name}`, () => breakLeaseLock(this.#locks, name));
  }

  protected async _readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    const gate = this.#gates.get(name);
    if (gate !== undefined) await gate;
    if (target.length === 0) {
      // A zero-length RADOS read means "the whole object": ask for existence only.
      if ((await this._stat(name)) === undefined) throw notFound(name);
      return;
    }
    const bytesRead = await this.#run(`read ${name}`, () => this.#limiter.run(target.length, () => this.#pool.read(name, offsetBytes, target)), name);
    target.fill(0, bytesRead);
  }

  protected async _write(name: string, offsetBytes: number, data: Uint8Array): Promise<void> {
    if (data.length === 0) {
      await this.#mutation(this.#run(`extend ${name}`, () => this.#gated(name, () => this.#extendTo(name, offsetBytes), async () => {})));
      return;
    }
    const gate = this.#gates.get(name);
    const writing = this.#run(`write ${name}`, async () => {
      if (gate !== undefined) await gate;
      try {
        await this.#submit(name, data.length, [["assertExists"], ["write", offsetBytes, data]]);
      } catch (error) {
        if (!isRadosError(error, enoent)) throw error;
        // Absent: index it, then create it by writing. Later replacements and removals of
        // `name` wait for this (#gated); later in-place writes fail too and follow it.
        await this.#index.add(name);
        await this.#submit(name, data.length, [["write", offsetBytes, data]]);
      }
    });
    await this.#mutation(this.#inPlace(name, writing));
  }

  protected async _writeFull(name: string, data: Uint8Array, offsetBytes: number, _atomic: boolean): Promise<void> {
    await this.#mutation(this.#run(`replace ${name}`, () => this.#gated(name, () => this.#index.add(name), () => this.#submit(name, data.length, replacement(data, offsetBytes)))));
  }

  protected async _createExclusive(name: string, data: Uint8Array): Promise<boolean> {
    const steps: WriteStep[] = data.length === 0 ? [["create", true]] : [["create", true], ["writeFull", data]];
    return this.#mutation(
      this.#run(`create ${name}`, async () => {
        try {
          await this.#gated(name, () => this.#index.add(name), () => this.#submit(name, data.length, steps));
          return true;
        } catch (error) {
          if (isRadosError(error, eexist)) return false;
          throw error;
        }
      }),
    );
  }

  protected async _copy(source: string, target: string, _atomic: boolean): Promise<void> {
    await this.#mutation(
      this.#run(`copy ${source} to ${target}`, async () => {
        // The source's gate as of now: a gate registered later (say by a copy the other way,
        // which would wait for ours) must not hold us up.
        const sourceGate = this.#gates.get(source);
        let data: Buffer = Buffer.alloc(0);
        const prelude = async (): Promise<void> => {
          if (sourceGate !== undefined) await sourceGate;
          data = await this.#readWhole(source);
          await this.#index.add(target);
        };
        await this.#gated(target, prelude, () => this.#submit(target, data.length, [["writeFull", data]]));
      }),
    );
  }

  protected async _stat(name: string): Promise<ObjectStat | undefined> {
    const gate = this.#gates.get(name);
    if (gate !== undefined) await gate;
    try {
      const [stat] = await this.#run(`stat ${name}`, () => this.#limiter.run(0, () => this.#pool.readOp(name, [["stat"]])), name);
      const { sizeBytes, mtimeSeconds } = stat as StatResult;
      return { sizeBytes, mtimeMs: mtimeSeconds * 1000 };
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND")) return undefined;
      throw error;
    }
  }

  protected async _remove(name: string): Promise<boolean> {
    return this.#mutation(
      this.#run(`remove ${name}`, async () => {
        try {
          await this.#gated(name, async () => {}, () => this.#limiter.run(0, () => this.#pool.remove(name)));
        } catch (error) {
          if (isRadosError(error, enoent)) return false;
          throw error;
        }
        await this.#index.drop(name);
        return true;
      }),
    );
  }

  protected async *_list(prefix: string): AsyncIterable<string> {
    try {
      yield* this.#index.list(prefix);
    } catch (error) {
      throw radosErrorToEngineError(error, `list ${prefix} in ${this.uri}`);
    }
  }

  protected async _barrier(): Promise<void> {
    await Promise.allSettled([...this.#mutations]);
    await this.#run("barrier", () => this.#pool.flush());
    if (this.#blocklisted !== undefined) throw this.#blocklisted;
  }

  protected async _lock(name: string, owner: string, leaseMs: number, mode: LockMode): Promise<ObjectLock> {
    return this.#run(`lock ${name}`, () => acquireLeaseLock(this.#locks, name, owner, this.#lockLeaseMs ?? leaseMs, mode));
  }

  protected async _lockHolder(name: string): Promise<LockHolder | undefined> {
    return this.#run(`lock holder of ${name}`, () => readLockHolder(this.#locks, name));
  }

  /**
   * Waits for everything in flight, then disconnects. Locks still held stop renewing and
   * run out with their lease (the file backend's locks likewise outlive close()).
   */
  protected async _close(): Promise<void> {
    for (const lock of [...this.#locks.held]) lock.abandon();
    await Promise.allSettled([...this.#mutations]);
    // Stray reads (an abandoned list, a lockHolder) may still be queued or in flight.
    while (this.#limiter.opsInFlight > 0 || this.#cluster.pending > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    this.#pool.close();
    await this.#cluster.shutdown();
  }

  /**
   * An empty write: `name` grows to `sizeBytes` if it is shorter (created if absent). Not a
   * zero-length RADOS write: past the end, that extends the object but leaves the data
   * digest the OSD keeps of a wholly written object, so the next whole-object read fails the
   * digest check, the object is declared unfound, and reads of it wait forever (Ceph 16,
   * memstore; seen as a hung test). A truncate up keeps the digest right, but shrinks a
   * longer object, so it is made conditional on the version the stat saw.
   */
  async #extendTo(name: string, sizeBytes: number): Promise<void> {
    for (let attempt = 0; attempt < extendAttemptsMax; attempt++) {
      let found: { version: number; sizeBytes: number } | undefined;
      try {
        const [version, stat] = await this.#limiter.run(0, () => this.#pool.readOp(name, [["version"], ["stat"]]));
        found = { version: version as number, sizeBytes: (stat as StatResult).sizeBytes };
      } catch (error) {
        if (!isRadosError(error, enoent)) throw error;
      }
      try {
        if (found === undefined) {
          await this.#index.add(name);
          await this.#submit(name, 0, sizeBytes === 0 ? [["create", true]] : [["create", true], ["truncate", sizeBytes]]);
        } else if (found.sizeBytes < sizeBytes) {
          await this.#submit(name, 0, [["assertVersion", found.version], ["truncate", sizeBytes]]);
        }
        return;
      } catch (error) {
        // Changed since the stat (created, written, removed): look again.
        if (![eexist, erange, eoverflow, enoent].some((errno) => isRadosError(error, errno))) throw error;
      }
    }
    throw new EngineError("EIO", `extend ${name} to ${sizeBytes} bytes: the object kept changing under ${extendAttemptsMax} attempts`);
  }

  /** The whole of `name`, read with its size in one atomic op (retried if it changed size meanwhile). */
  async #readWhole(name: string): Promise<Buffer> {
    let sizeBytes = 0;
    for (;;) {
      const data = Buffer.allocUnsafe(sizeBytes);
      const steps: ReadStep[] = sizeBytes === 0 ? [["stat"]] : [["stat"], ["read", 0, data]];
      let results: unknown[];
      try {
        results = await this.#limiter.run(sizeBytes, () => this.#pool.readOp(name, steps));
      } catch (error) {
        if (isRadosError(error, enoent)) throw notFound(name);
        throw error;
      }
      const stat = results[0] as StatResult;
      if (stat.sizeBytes === sizeBytes) return data;
      sizeBytes = stat.sizeBytes;
    }
  }

  #submit(name: string, bytes: number, steps: readonly WriteStep[]): Promise<void> {
    return this.#limiter.run(bytes, () => this.#pool.writeOp(name, steps));
  }

  /**
   * Runs `prelude` (an index update…), then `submit`, for an operation that must reach RADOS
   * in the order it was issued although it starts with other ops:
   * - it waits for the gated operation on `name` before it and for the in-place writes
   *   issued before it (one may yet turn into index + create: it must land first);
   * - operations on `name` issued after it wait until `submit` has queued its op.
   * Everything up to the first await runs when the caller issues the operation.
   */
  async #gated<T>(name: string, prelude: () => Promise<void>, submit: () => Promise<T>): Promise<T> {
    const previous = this.#gates.get(name);
    const inPlace = [...(this.#inPlaceWrites.get(name) ?? [])];
    let open = (): void => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    this.#gates.set(name, gate);
    try {
      if (previous !== undefined) await previous;
      await Promise.allSettled(inPlace);
      await prelude();
      return await submitNow(submit, open);
    } finally {
      open();
      if (this.#gates.get(name) === gate) this.#gates.delete(name);
    }
  }

  /** Tracks an in-place write on `name` until it settles (see #gated). */
  #inPlace<T>(name: string, running: Promise<T>): Promise<T> {
    let writes = this.#inPlaceWrites.get(name);
    if (writes === undefined) this.#inPlaceWrites.set(name, (writes = new Set()));
    writes.add(running);
    const settled = (): void => {
      writes.delete(running);
      if (writes.size === 0 && this.#inPlaceWrites.get(name) === writes) this.#inPlaceWrites.delete(name);
    };
    running.then(settled, settled);
    return running;
  }

  #mutation<T>(running: Promise<T>): Promise<T> {
    this.#mutations.add(running);
    const settled = (): void => void this.#mutations.delete(running);
    running.then(settled, settled);
    return running;
  }

  async #run<T>(action: string, body: () => Promise<T>, name?: string): Promise<T> {
    try {
      return await body();
    } catch (error) {
      if (name !== undefined && isRadosError(error, enoent)) throw notFound(name);
      if (isRadosError(error, eshutdown)) this.#noteBlocklisted(error, action);
      throw radosErrorToEngineError(error, `${action} in ${this.uri}`);
    }
  }

  #noteBlocklisted(error: unknown, action: string): void {
    this.#blocklisted ??= radosErrorToEngineError(error, `${action} in ${this.uri}`) as EngineError;
  }
}

/** Calls `submit` (which queues its op synchronously), opens the gate, then awaits the op. */
function submitNow<T>(submit: () => Promise<T>, open: () => void): Promise<T> {
  const running = submit();
  open();
  return running;
}

/** The write op that makes an object read as `offsetBytes` zeros, then `data`. */
function replacement(data: Uint8Array, offsetBytes: number): WriteStep[] {
  if (offsetBytes === 0) return [["writeFull", data]];
  const empty = Buffer.alloc(0);
  if (data.length === 0) return [["writeFull", empty], ["truncate", offsetBytes]];
  return [["writeFull", empty], ["write", offsetBytes, data]];
}

function notFound(name: string): EngineError {
  return new EngineError("ENOT_FOUND", `object ${name} does not exist`);
}
