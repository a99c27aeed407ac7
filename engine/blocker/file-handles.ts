/**
 * A bounded cache of open file handles, keyed by object name, with reference counts so a
 * handle is never closed under an operation that is using it:
 *
 *   use(key) ──► cached entry, or open() ──► refs++ ──► action(handle) ──► refs--
 *                                                                        │
 *   evicted / invalidated / cache closed ──► retired ──(refs == 0)──► handle.close()
 *
 * An entry opened while an invalidation happened is not cached (the open may have raced
 * a rename and returned the replaced inode): it serves its one operation and is closed.
 */
import type { FileHandle } from "node:fs/promises";
import { LRUCache } from "lru-cache";

interface HandleEntry {
  readonly handle: FileHandle;
  refs: number;
  /** Out of the cache: close as soon as the last user is done. */
  retired: boolean;
}

export class FileHandleCache {
  readonly #entries: LRUCache<string, HandleEntry>;
  /** Closes in flight, awaited by close() so the store closes with no descriptor left open. */
  readonly #closing = new Set<Promise<void>>();
  #invalidations = 0;
  #closed = false;

  constructor(maxHandles: number) {
    this.#entries = new LRUCache<string, HandleEntry>({ max: maxHandles, dispose: (entry) => this.#retire(entry) });
  }

  /** Open handles held by the cache (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Runs `action` with a handle for `key`, opening one with `open` on a miss; the handle is
   * kept for later calls only if `cacheable`.
   */
  async use<T>(key: string, open: () => Promise<FileHandle>, action: (handle: FileHandle) => Promise<T>, cacheable: boolean): Promise<T> {
    const entry = this.#entries.get(key) ?? (await this.#open(key, open, cacheable));
    entry.refs++;
    try {
      return await action(entry.handle);
    } finally {
      entry.refs--;
      if (entry.retired && entry.refs === 0) this.#closeHandle(entry.handle);
    }
  }

  async #open(key: string, open: () => Promise<FileHandle>, cacheable: boolean): Promise<HandleEntry> {
    const invalidationsBefore = this.#invalidations;
    const handle = await open();
    const keep = cacheable && !this.#closed && this.#invalidations === invalidationsBefore;
    const entry: HandleEntry = { handle, refs: 0, retired: !keep };
    // A concurrent miss on the same key may have cached its own handle; replacing it
    // retires that one (closed once its user is done).
    if (keep) this.#entries.set(key, entry);
    return entry;
  }

  /** Drops the handle for `key`: the object's inode was replaced or removed. */
  invalidate(key: string): void {
    this.#invalidations++;
    this.#entries.delete(key);
  }

  /** Closes every idle handle now and every busy one when its operation ends. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#entries.clear();
    await Promise.all(this.#closing);
  }

  #retire(entry: HandleEntry): void {
    entry.retired = true;
    if (entry.refs === 0) this.#closeHandle(entry.handle);
  }

  #closeHandle(handle: FileHandle): void {
    // A close error cannot lose data we promised: barrier() fdatasyncs through a fresh
    // descriptor if needed, and reports writeback errors there.
    const closing = handle.close().catch(() => {});
    this.#closing.add(closing);
    void closing.finally(() => this.#closing.delete(closing));
  }
}
