/**
 * Which pages of which objects this process has read or written lately: the bet that the
 * page cache still holds them, on which the file backend reads them synchronously
 * (sync-io.ts). Only a bet: the kernel may have evicted a page since (a host short of
 * memory), and then the sync read waits for the disk; the read guard notices such misses
 * and sends reads back to the thread pool. Never a question of correctness: a sync read
 * and a pooled one are the same pread.
 *
 * Two generations of page bits per object, so "lately" means within the last one to two
 * generations:
 *
 *   object ──► { generation g, current: bits of pages touched in g,
 *                              previous: bits touched in g − 1 (or none) }
 *   touch / covers in generation G: g = G − 1 → previous = current, current = empty;
 *                                   g < G − 1 → both empty
 *
 * At most objectsMax objects are tracked (least recently used dropped first), each with one
 * bit per page up to the highest page touched: 256 bytes for a 4 MiB block.
 */
import { LRUCache } from "lru-cache";
import { pageBytes } from "./sync-io.ts";

/**
 * How long a page counts as recent: 1–2 minutes. Linux keeps a page touched that lately
 * unless the host is short of memory (then the read guard notices the misses); a guest's
 * hot blocks, re-read every few seconds or minutes, stay recent; a page not touched for
 * longer is read through the pool once and is recent again. (With 30 s, the benchmark's
 * rows, ~40 s apart per server, found half their pages expired.)
 */
export const recentPagesGenerationMs = 60_000;

interface ObjectPages {
  generation: number;
  current: Uint32Array;
  previous: Uint32Array | undefined;
}

const noBits = new Uint32Array(0);

export class RecentPages {
  readonly #objects: LRUCache<string, ObjectPages>;
  readonly #generationMs: number;

  constructor(objectsMax: number, generationMs = recentPagesGenerationMs) {
    this.#objects = new LRUCache<string, ObjectPages>({ max: objectsMax });
    this.#generationMs = generationMs;
  }

  /** Objects tracked (for tests). */
  get size(): number {
    return this.#objects.size;
  }

  /** Marks the pages of `[offsetBytes, offsetBytes + lengthBytes)` of `name` as just read or written. */
  touch(name: string, offsetBytes: number, lengthBytes: number, nowMs: number): void {
    if (lengthBytes <= 0) return;
    const generation = Math.floor(nowMs / this.#generationMs);
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / pageBytes);
    let pages = this.#objects.get(name);
    if (pages === undefined) {
      pages = { generation, current: noBits, previous: undefined };
      this.#objects.set(name, pages);
    } else {
      roll(pages, generation);
    }
    if (pages.current.length <= last >>> 5) {
      const grown = new Uint32Array((last >>> 5) + 1);
      grown.set(pages.current);
      pages.current = grown;
    }
    const bits = pages.current;
    for (let page = first; page <= last; page++) bits[page >>> 5] = (bits[page >>> 5] as number) | (1 << (page & 31));
  }

  /** Whether every page of the range was touched lately. */
  covers(name: string, offsetBytes: number, lengthBytes: number, nowMs: number): boolean {
    const pages = this.#objects.get(name);
    if (pages === undefined || lengthBytes <= 0) return false;
    roll(pages, Math.floor(nowMs / this.#generationMs));
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / pageBytes);
    for (let page = first; page <= last; page++) {
      const mask = 1 << (page & 31);
      const word = page >>> 5;
      if ((((pages.current[word] ?? 0) | (pages.previous?.[word] ?? 0)) & mask) === 0) return false;
    }
    return true;
  }

  /** The object was replaced, truncated or removed: none of its pages is known to be cached. */
  forget(name: string): void {
    this.#objects.delete(name);
  }
}

function roll(pages: ObjectPages, generation: number): void {
  if (pages.generation === generation) return;
  pages.previous = pages.generation === generation - 1 ? pages.current : undefined;
  pages.current = noBits;
  pages.generation = generation;
}
