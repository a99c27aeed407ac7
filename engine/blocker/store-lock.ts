/**
 * A store-wide shared/exclusive lock on one lock name, across processes on every backend
 * (file: flock LOCK_SH/LOCK_EX; rados: cls_lock shared/exclusive; memory: in-process), with
 * waiting: ObjectStore.lock never waits, so this retries a refused hold until a deadline.
 *
 *   shared()     ──► this process's holds share ONE backend shared lock (counted):
 *                    0 → 1 takes it, 1 → 0 releases it storeLockLingerMs later (unless a
 *                    hold comes back first); shared holds never wait on each other
 *   exclusive()  ──► a backend exclusive lock of its own (it conflicts with this
 *                    process's shared lock too, so in-process exclusion needs nothing more)
 *
 * Counting shared holds (per store object, whichever engine in the process holds) keeps the cost of a hold (one flock(1) spawn on the file backend,
 * one OSD op on rados) off every upload while several run at once. Linux flock and cls_lock
 * grant a shared hold while an exclusive one waits (readers first), so exclusive holders
 * must expect to give up (`waitMs`); the engine's one exclusive holder is gc, which then
 * skips what needed the lock.
 */
import { isEngineError } from "../errors.ts";
import type { ObjectLock, ObjectStore } from "./object-store.ts";

/** Lease of a hold on rados, renewed every third of it while held (the volume locks' 30 s). */
export const storeLockLeaseMs = 30_000;
/**
 * First and largest pause between attempts: 10 ms doubles to 200 ms, so a hold freed in a
 * few ms (a gc batch) is noticed fast, and a long wait costs a few ops per second.
 */
const retryFirstMs = 10;
const retryMaxMs = 200;
/**
 * A shared lock whose last hold ended is kept this long before it is released, so a burst
 * of holds (maps created one after another) costs one backend lock, not one each; an
 * exclusive holder elsewhere waits at most this much longer (here: not at all).
 */
export const storeLockLingerMs = 250;

/** One StoreLock per store object and name, so every engine on that store object shares the count. */
const storeLocks = new WeakMap<ObjectStore, Map<string, StoreLock>>();

export interface HeldLock {
  release(): Promise<void>;
  /** Throws EVOLUME_LOCKED if the hold was lost (rados: a lease that could not be renewed). */
  check(): Promise<void>;
}

export class StoreLock {
  readonly #objects: ObjectStore;
  readonly #name: string;
  readonly #owner: string;
  #sharedHolds = 0;
  /** The backend shared lock while held, being taken, or lingering (#sharedHolds 0, timer set). */
  #shared: Promise<ObjectLock> | undefined;
  #linger: NodeJS.Timeout | undefined;
  #releasing: Promise<void> = Promise.resolve();

  private constructor(objects: ObjectStore, name: string, owner: string) {
    this.#objects = objects;
    this.#name = name;
    this.#owner = owner;
  }

  /** The StoreLock of lock `name` on `objects` (created on first use; `owner` names this process in it). */
  static of(objects: ObjectStore, name: string, owner: string): StoreLock {
    let byName = storeLocks.get(objects);
    if (byName === undefined) storeLocks.set(objects, (byName = new Map()));
    let lock = byName.get(name);
    if (lock === undefined) byName.set(name, (lock = new StoreLock(objects, name, owner)));
    return lock;
  }

  /** A shared hold; waits up to `waitMs` for an exclusive holder to go (then EVOLUME_LOCKED). */
  async shared(waitMs: number): Promise<HeldLock> {
    this.#sharedHolds++;
    clearTimeout(this.#linger);
    this.#linger = undefined;
    const taking = (this.#shared ??= this.#releasing.then(() => retrying(() => this.#objects.lock(this.#name, this.#owner, storeLockLeaseMs, "shared"), waitMs)));
    let lock: ObjectLock;
    try {
      lock = await taking;
    } catch (error) {
      this.#sharedHolds--;
      if (this.#shared === taking) this.#shared = undefined; // the next caller tries afresh
      throw error;
    }
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (--this.#sharedHolds > 0) return;
        this.#linger = setTimeout(() => void this.#releaseShared(), storeLockLingerMs);
        this.#linger.unref();
      },
      check: () => lock.renew(),
    };
  }

  /** An exclusive hold; waits up to `waitMs` for the shared holders (any process) to go. */
  async exclusive(waitMs: number): Promise<HeldLock> {
    const lock = await retrying(async () => {
      // Our own lingering shared lock would refuse us: let it go first.
      if (this.#sharedHolds === 0) await this.#releaseShared();
      return this.#objects.lock(this.#name, `${this.#owner} (exclusive)`, storeLockLeaseMs, "exclusive");
    }, waitMs);
    return { release: () => lock.release(), check: () => lock.renew() };
  }

  /** Lets a lingering shared lock go now (the store is closing). */
  async close(): Promise<void> {
    if (this.#sharedHolds === 0) await this.#releaseShared();
  }

  /** Releases the backend shared lock once no hold is left (a failed take has none to release). */
  #releaseShared(): Promise<void> {
    clearTimeout(this.#linger);
    this.#linger = undefined;
    const taking = this.#shared;
    if (this.#sharedHolds > 0 || taking === undefined) return this.#releasing;
    this.#shared = undefined;
    this.#releasing = taking.then(
      (lock) => lock.release(),
      () => undefined,
    );
    return this.#releasing;
  }
}

/** Calls `take` until it is not refused with EVOLUME_LOCKED, for at most `waitMs`. */
async function retrying(take: () => Promise<ObjectLock>, waitMs: number): Promise<ObjectLock> {
  const deadline = Date.now() + waitMs;
  for (let pauseMs = retryFirstMs; ; pauseMs = Math.min(retryMaxMs, pauseMs * 2)) {
    try {
      return await take();
    } catch (error) {
      if (!isEngineError(error, "EVOLUME_LOCKED") || Date.now() + pauseMs > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}
