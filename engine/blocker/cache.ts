/**
 * CachedObjectStore: an ObjectStore layer (it wraps `next` explicitly, like an nbdkit
 * filter) that keeps whole content-addressed blocks (`b.<hash>`) in memory.
 *
 *   read b.X ──hit──► slice of the cached copy
 *            └─miss─► next.stat + next.read(whole object) ──► cache ──► slice
 *   createExclusive b.X (created) ──► cache the data
 *   write / writeFull / copy onto / remove b.X ──► evict (before and after)
 *   every other name, and every other method ──► next, unchanged
 *
 * `b.` objects are immutable by construction (their name is their content), so a cached
 * copy never goes stale in practice; the evictions only keep this layer a correct
 * ObjectStore for callers that do mutate them (the conformance suite does).
 */
import { LRUCache } from "lru-cache";
import { EngineError } from "../errors.ts";
import { contentObjectPrefix } from "./content.ts";
import { ObjectStoreBase, type LockHolder, type LockMode, type ObjectLock, type ObjectStat, type ObjectStore, type StoreCapabilities } from "./object-store.ts";

/**
 * Default byte budget: 256 MiB holds 64 blocks of 4 MiB (the default block size), enough
 * for the working set of a few booting VMs sharing one image, yet a small share of a host's RAM.
 */
export const blockCacheBytesDefault = 256 * 1024 * 1024;

export interface CachedObjectStoreOptions {
  /** Memory budget for cached objects. */
  maxBytes?: number;
}

export interface CacheStats {
  hits: number;
  misses: number;
  cachedBytes: number;
  cachedObjects: number;
}

function isCacheable(name: string): boolean {
  return name.startsWith(contentObjectPrefix);
}

export class CachedObjectStore extends ObjectStoreBase {
  readonly next: ObjectStore;
  readonly #objects: LRUCache<string, Buffer>;
  /** Misses being fetched, so concurrent readers of one block share one fetch. */
  readonly #fetching = new Map<string, Promise<Buffer>>();
  /**
   * Bumped by every mutation of a cacheable object: a fetch that overlapped one may have
   * read the old content, so its result is returned but not cached.
   */
  #mutations = 0;
  #hits = 0;
  #misses = 0;

  constructor(next: ObjectStore, options: CachedObjectStoreOptions = {}) {
    super();
    this.next = next;
    const maxBytes = options.maxBytes ?? blockCacheBytesDefault;
    // An object larger than the whole budget is simply not cached (lru-cache refuses it).
    this.#objects = new LRUCache<string, Buffer>({ maxSize: maxBytes, sizeCalculation: (data) => Math.max(1, data.length) });
  }

  get capabilities(): StoreCapabilities {
    return this.next.capabilities;
  }

  get uri(): string {
    return this.next.uri;
  }

  get stats(): CacheStats {
    return { hits: this.#hits, misses: this.#misses, cachedBytes: this.#objects.calculatedSize, cachedObjects: this.#objects.size };
  }

  protected async _readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    if (!isCacheable(name)) return this.next.readInto(name, offsetBytes, target);
    const cached = this.#objects.get(name);
    if (cached !== undefined) this.#hits++;
    else this.#misses++;
    const whole = cached ?? (await this.#fetch(name));
    const copiedBytes = offsetBytes < whole.length ? whole.copy(target, 0, offsetBytes, Math.min(whole.length, offsetBytes + target.length)) : 0;
    target.fill(0, copiedBytes);
  }

  async #fetch(name: string): Promise<Buffer> {
    const pending = this.#fetching.get(name);
    if (pending !== undefined) return pending;
    const fetching = this.#fetchWhole(name).finally(() => {
      if (this.#fetching.get(name) === fetching) this.#fetching.delete(name);
    });
    this.#fetching.set(name, fetching);
    return fetching;
  }

  async #fetchWhole(name: string): Promise<Buffer> {
    const mutationsBefore = this.#mutations;
    const stat = await this.next.stat(name);
    if (stat === undefined) throw new EngineError("ENOT_FOUND", `object ${name} does not exist`);
    // Objects are at most one block; the base rejects a single read above ioLengthMaxBytes.
    const whole = await this.next.read(name, 0, stat.sizeBytes);
    if (this.#mutations === mutationsBefore) this.#objects.set(name, whole);
    return whole;
  }

  protected async _write(name: string, offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.#mutate(name, () => this.next.write(name, offsetBytes, data));
  }

  protected async _writeFull(name: string, data: Uint8Array, offsetBytes: number, atomic: boolean): Promise<void> {
    await this.#mutate(name, () => this.next.writeFull(name, data, offsetBytes, { atomic }));
  }

  protected async _createExclusive(name: string, data: Uint8Array): Promise<boolean> {
    const created = await this.next.createExclusive(name, data);
    if (created && isCacheable(name)) this.#objects.set(name, Buffer.from(data));
    return created;
  }

  protected async _copy(source: string, target: string, atomic: boolean): Promise<void> {
    await this.#mutate(target, () => this.next.copy(source, target, { atomic }));
  }

  protected async _stat(name: string): Promise<ObjectStat | undefined> {
    return this.next.stat(name);
  }

  protected async _remove(name: string): Promise<boolean> {
    return this.#mutate(name, () => this.next.remove(name));
  }

  /** Evicts around a mutation of `name`: before, so no reader is served the old copy; after, so no overlapping fetch re-adds it. */
  async #mutate<T>(name: string, mutation: () => Promise<T>): Promise<T> {
    if (!isCacheable(name)) return mutation();
    this.#evict(name);
    try {
      return await mutation();
    } finally {
      this.#evict(name);
    }
  }

  #evict(name: string): void {
    this.#mutations++;
    this.#objects.delete(name);
    // A reader arriving from now on must not join a fetch that may return the old content.
    this.#fetching.delete(name);
  }

  protected _list(prefix: string): AsyncIterable<string> {
    return this.next.list(prefix);
  }

  protected async _barrier(): Promise<void> {
    await this.next.barrier();
  }

  protected async _lock(name: string, owner: string, leaseMs: number, mode: LockMode): Promise<ObjectLock> {
    return this.next.lock(name, owner, leaseMs, mode);
  }

  protected async _lockHolder(name: string): Promise<LockHolder | undefined> {
    return this.next.lockHolder(name);
  }

  /** Drops the cache and closes `next`: this layer owns the store it wraps. */
  protected async _close(): Promise<void> {
    this.#objects.clear();
    await this.next.close();
  }
}
